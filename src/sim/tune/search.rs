//! The optimiser: a compass (pattern) search over integer knobs with shrinking steps.
//!
//! Each evaluation of a policy is a simulation of thousands of customers — about half a second for
//! 50,000 invoices — so a search gets a hundred or so of them, not the tens of thousands a
//! population-based method wants. The knobs are integers (days, hours, counts) and choices from a
//! list, each bounded, and the simulation is deterministic: the same policy on the same customers
//! gives the same figure, so there is no noise to average out. That is the setting compass search
//! was made for (Kolda, Lewis and Torczon, "Optimization by direct search", SIAM Review 45(3),
//! 2003): from the best point so far, try one knob a step up and a step down; keep a move that
//! scores better (and keep going that way while it does, one and two steps at a time); when no
//! knob moves at the current steps, halve them; when no knob moves at the finest steps, the point
//! is a local optimum on the integer grid and the search has converged.
//!
//! Why not a crate: `cmaes` (0.2.2) and `argmin` (0.11, Nelder–Mead, particle swarm) search
//! continuous spaces — rounding their points onto integer knobs stalls their step adaptation — and
//! CMA-ES wants a population of about 4 + 3 ln(n) evaluations per generation for n knobs, a dozen
//! generations at least, several times the budget. `cmaes` also draws its plots with FreeType by
//! default, which recoup's SVG charts avoid. The search below is eighty lines, has no randomness
//! (the same inputs give the same policy) and scores two moves of a knob side by side.

use std::collections::HashMap;

/// One knob's range and its steps: the search starts with `first_step` and halves it down to
/// `last_step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: i64,
    pub max: i64,
    pub first_step: i64,
    pub last_step: i64,
}

/// How two evaluations compare.
pub trait Score {
    /// Whether `self` is better than `other` by enough to move there.
    fn beats(&self, other: &Self) -> bool;
}

/// Where a search ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<S> {
    pub point: Vec<i64>,
    pub score: S,
    /// No knob moves at its finest step: a local optimum, not a search cut short.
    pub converged: bool,
    /// Points evaluated, the start included.
    pub evaluated: usize,
}

/// Maximises over the box `ranges` from `start`, whose score is `start_score`.
///
/// `evaluate` scores a batch of points (the moves of one knob, side by side) and returns `None`
/// to stop the search, which then returns the best point so far. `matters(point, knob)` says
/// whether a knob changes anything at `point` (the fourth gap of a schedule of three retries does
/// not): knobs that do not are not tried. Points already scored are not scored again.
pub fn maximise<S, E, M>(
    ranges: &[Range],
    start: Vec<i64>,
    start_score: S,
    matters: M,
    mut evaluate: E,
) -> Found<S>
where
    S: Score + Clone,
    E: FnMut(&[Vec<i64>]) -> Option<Vec<S>>,
    M: Fn(&[i64], usize) -> bool,
{
    let mut seen: HashMap<Vec<i64>, S> = HashMap::from([(start.clone(), start_score.clone())]);
    let mut best = Found {
        point: start,
        score: start_score,
        converged: false,
        evaluated: 1,
    };
    let mut steps: Vec<i64> = ranges.iter().map(|r| r.first_step.max(1)).collect();
    loop {
        let mut moved = false;
        for knob in 0..ranges.len() {
            if !matters(&best.point, knob) {
                continue;
            }
            // A step both ways first; then, while a move pays, one and two steps further the same
            // way. Two points a batch: on two cores, two candidates score in the time of one.
            let mut reaches: Vec<i64> = vec![1, -1];
            while !reaches.is_empty() {
                let moves: Vec<(i64, Vec<i64>)> = reaches
                    .iter()
                    .filter_map(|&reach| {
                        let mut point = best.point.clone();
                        let r = &ranges[knob];
                        point[knob] = (point[knob] + reach * steps[knob]).clamp(r.min, r.max);
                        (point != best.point).then_some((reach.signum(), point))
                    })
                    .collect();
                let mut fresh: Vec<Vec<i64>> = Vec::new();
                for (_, point) in &moves {
                    // Two reaches clamped to the same edge are one point.
                    if !seen.contains_key(point) && !fresh.contains(point) {
                        fresh.push(point.clone());
                    }
                }
                if !fresh.is_empty() {
                    let Some(scores) = evaluate(&fresh) else {
                        return best;
                    };
                    best.evaluated += fresh.len();
                    seen.extend(fresh.into_iter().zip(scores));
                }
                let winner = moves
                    .into_iter()
                    .filter(|(_, p)| seen[p].beats(&best.score))
                    .reduce(|a, b| if seen[&b.1].beats(&seen[&a.1]) { b } else { a });
                reaches = match winner {
                    Some((direction, point)) => {
                        best.score = seen[&point].clone();
                        best.point = point;
                        moved = true;
                        vec![direction, 2 * direction]
                    }
                    None => Vec::new(),
                };
            }
        }
        if !moved {
            if steps
                .iter()
                .zip(ranges)
                .all(|(s, r)| *s <= r.last_step.max(1))
            {
                best.converged = true;
                return best;
            }
            for (step, range) in steps.iter_mut().zip(ranges) {
                *step = (*step / 2).max(range.last_step.max(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Score for f64 {
        fn beats(&self, other: &Self) -> bool {
            self > other
        }
    }

    fn range(min: i64, max: i64, first_step: i64) -> Range {
        Range {
            min,
            max,
            first_step,
            last_step: 1,
        }
    }

    fn run(f: impl Fn(&[i64]) -> f64, ranges: &[Range], start: Vec<i64>) -> Found<f64> {
        let start_score = f(&start);
        maximise(
            ranges,
            start,
            start_score,
            |_, _| true,
            |batch| Some(batch.iter().map(|p| f(p)).collect()),
        )
    }

    #[test]
    fn it_finds_the_top_of_a_bowl_and_says_it_converged() {
        let bowl = |p: &[i64]| -(((p[0] - 7).pow(2) + (p[1] + 3).pow(2) * 3) as f64);
        let found = run(bowl, &[range(-20, 20, 8), range(-20, 20, 8)], vec![0, 0]);
        assert_eq!(found.point, [7, -3]);
        assert!(found.converged);
        assert!(found.evaluated < 60, "{}", found.evaluated);
    }

    #[test]
    fn it_stays_in_the_box_finds_an_optimum_on_its_edge_and_scores_each_point_once() {
        let slope = |p: &[i64]| (p[0] * 2 - p[1]) as f64;
        let mut scored = Vec::new();
        let found = maximise(
            &[range(1, 21, 4), range(0, 5, 1)],
            vec![3, 2],
            slope(&[3, 2]),
            |_, _| true,
            |batch| {
                scored.extend(batch.iter().cloned());
                Some(batch.iter().map(|p| slope(p)).collect())
            },
        );
        assert_eq!(found.point, [21, 0]);
        assert_eq!(found.evaluated, scored.len() + 1);
        let mut unique = scored.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            scored.len(),
            "a point scored twice: {scored:?}"
        );
        assert!(
            scored
                .iter()
                .all(|p| (1..=21).contains(&p[0]) && (0..=5).contains(&p[1]))
        );
    }

    #[test]
    fn knobs_that_do_not_matter_are_not_tried() {
        let f = |p: &[i64]| -((p[0] - 2).pow(2) + (p[1] - 9).pow(2)) as f64;
        let mut tried = Vec::new();
        let found = maximise(
            &[range(0, 10, 2), range(0, 10, 2)],
            vec![0, 0],
            f(&[0, 0]),
            |_, knob| knob == 0,
            |batch| {
                tried.extend(batch.iter().cloned());
                Some(batch.iter().map(|p| f(p)).collect())
            },
        );
        assert_eq!(found.point, [2, 0]);
        assert!(tried.iter().all(|p| p[1] == 0));
    }

    #[test]
    fn a_stopped_search_returns_the_best_so_far_and_the_same_inputs_the_same_answer() {
        let f = |p: &[i64]| -((p[0] - 50).pow(2)) as f64;
        let mut batches = 0;
        let stopped = maximise(
            &[range(0, 100, 4)],
            vec![0],
            f(&[0]),
            |_, _| true,
            |batch| {
                batches += 1;
                (batches <= 3).then(|| batch.iter().map(|p| f(p)).collect())
            },
        );
        assert!(!stopped.converged);
        assert!(stopped.point[0] > 0 && stopped.point[0] < 50);
        assert_eq!(stopped.score, f(&stopped.point));
        let a = run(f, &[range(0, 100, 4)], vec![0]);
        let b = run(f, &[range(0, 100, 4)], vec![0]);
        assert_eq!(a, b);
        assert_eq!(a.point, [50]);
    }
}
