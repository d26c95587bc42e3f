//! An update link opened: kept on the case, told on its timeline once per visit, changing no plan.

use super::*;

#[test]
fn an_opened_link_is_kept_on_the_case_and_told_once_per_visit() {
    let case = run(&[failed("evt_1", NOW, 1)]).unwrap();
    assert_eq!(case.link_opened_at, None);
    let policy = retries_only();
    let open = |case: &Case, minutes: i64, outcome| {
        let input = Input::LinkOpened {
            at: now() + SignedDuration::from_mins(minutes),
            outcome,
        };
        decide(&policy, Some(case), &input, now()).case.unwrap()
    };

    let first = open(&case, 10, LinkOutcome::Portal);
    assert_eq!(
        first.link_opened_at,
        Some(now() + SignedDuration::from_mins(10))
    );
    assert_eq!(first.link_opens, 1);
    assert_eq!(first.timers, case.timers, "opening a link changes no plan");
    let told = |case: &Case| {
        case.timeline
            .iter()
            .filter(|e| e.what == "update link opened")
            .map(|e| e.detail.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        told(&first),
        [
            "the customer opened the link from a nudge; sent to Stripe's billing portal to update their payment method"
        ]
    );

    // A reload minutes later is counted, not told; a visit the next day is told again.
    let reload = open(&first, 12, LinkOutcome::Portal);
    assert_eq!(reload.link_opens, 2);
    assert_eq!(told(&reload).len(), 1);
    let next_day = open(&reload, 24 * 60, LinkOutcome::AlreadyPaid);
    assert_eq!(next_day.link_opens, 3);
    assert_eq!(
        next_day.link_opened_at, first.link_opened_at,
        "the first opening stays"
    );
    assert_eq!(
        told(&next_day)[1],
        "the customer opened the link from a nudge; the invoice was already paid: shown a \
         thank-you (opened 3 times so far)"
    );

    // The case's JSON carries both fields once there is something to say, and none before.
    let json = serde_json::to_value(&next_day).unwrap();
    assert_eq!(json["link_opens"], 3);
    assert!(json["link_opened_at"].is_string());
    assert!(
        serde_json::to_value(&case)
            .unwrap()
            .get("link_opens")
            .is_none()
    );
}

#[test]
fn an_opened_link_without_a_case_changes_nothing() {
    let input = Input::LinkOpened {
        at: now(),
        outcome: LinkOutcome::Portal,
    };
    assert_eq!(decide(&retries_only(), None, &input, now()).case, None);
}

#[test]
fn credentials_in_a_url_never_reach_the_timeline() {
    let mut case = run(&[failed("evt_1", NOW, 1)]).unwrap();
    case.record(Entry {
        at: now(),
        what: "nudge delivered".to_owned(),
        detail: "webhook not sent (nudge webhook: error sending request for url \
                 (https://acme:p@ss@hooks.acme.example/nudges))"
            .to_owned(),
        event: None,
    });
    let detail = &case.timeline.last().unwrap().detail;
    assert!(
        !detail.contains("p@ss") && !detail.contains("ss@"),
        "{detail}"
    );
    assert!(
        detail.contains("https://acme:***@hooks.acme.example/nudges"),
        "{detail}"
    );
}
