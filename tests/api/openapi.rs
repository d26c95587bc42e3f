//! The OpenAPI document at `/api/openapi.json`, checked against the routes it describes: every
//! operation it lists is called on a running recoup, and each answer must be one the document lists
//! for that operation, with a body its schema describes — no key missing, none undeclared.

use std::collections::BTreeSet;

use recoup::server::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{API_TOKEN, API_TOKENS, Answer, Recoup, TestApp, fixture, unix_now};

const INVOICE: &str = "in_1QaZ4rB7WZ01zgkWfT9s8KpM";
const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
const SUBSCRIPTION: &str = "sub_1QaZ3pB7WZ01zgkW5hJx2Lq0";

/// Every route under `/api/v1`: one served but missing here, or listed here but not documented,
/// fails the test.
const ROUTES: [(&str, &str); 9] = [
    ("get", "/api/v1/invoices/{id}"),
    ("get", "/api/v1/customers/{id}"),
    ("get", "/api/v1/subscriptions/{id}"),
    ("post", "/api/v1/invoices/{id}/hold"),
    ("post", "/api/v1/invoices/{id}/resume"),
    ("post", "/api/v1/invoices/{id}/retry"),
    ("post", "/api/v1/clock/advance"),
    ("get", "/api/v1/experiments"),
    ("get", "/api/v1/dashboard"),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn app() -> TestApp {
    TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
        ],
    )
    .await
}

/// The document, fetched without a token.
async fn document(app: &TestApp) -> Value {
    let answer = app.get("/api/openapi.json").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/json");
    answer.json()
}

/// Every operation of the document: method, path and the operation itself.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            found.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    found
}

/// `path` with each path parameter replaced by `id`.
fn filled(operation: &Value, path: &str, id: &str) -> String {
    let mut path = path.to_owned();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] == "path" {
            let name = parameter["name"].as_str().unwrap();
            path = path.replace(&format!("{{{name}}}"), id);
        }
    }
    assert!(
        !path.contains('{'),
        "an undocumented path parameter: {path}"
    );
    path
}

/// Calls `path` as the operation does, with the support token or none.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: bool,
) -> Answer {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut request = app.http.request(method, app.url(path));
    if token {
        request = request.bearer_auth(API_TOKEN);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    Answer::from(request.send().await.expect("request completes")).await
}

/// Asserts the answer is one the operation lists, and its body fits the schema listed for it.
fn answers_as_documented(doc: &Value, operation: &Value, what: &str, answer: &Answer) {
    let status = answer.status.to_string();
    let listed = &operation["responses"][&status];
    assert!(
        listed.is_object(),
        "{what} answered {status}, which the document does not list: {}",
        answer.text
    );
    let schema = &listed["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{what}: {status} has no JSON schema");
    let body: Value = serde_json::from_str(&answer.text).unwrap_or_else(|e| {
        panic!(
            "{what} answered {status} with a body that is not JSON ({e}); an unmatched route? {:?}",
            answer.text
        )
    });
    if let Err(why) = fits(doc, schema, &body, "$") {
        panic!("{what} answered {status} with a body its schema does not describe: {why}\n{body}");
    }
}

/// Whether `value` fits `schema` and declares no key the schema does not.
fn fits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let declared = evaluate(doc, schema, value, at)?;
    for key in value.as_object().into_iter().flat_map(|o| o.keys()) {
        if !declared.contains(key) {
            return Err(format!("{at}.{key} is not in the document"));
        }
    }
    Ok(())
}

/// Checks `value` against the keywords the document uses, and returns the object keys `schema`
/// (with its `allOf`/`oneOf` parts) declares, so that [`fits`] can refuse the others.
fn evaluate(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
) -> Result<BTreeSet<String>, String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the document: {reference}"));
        let component = &doc["components"]["schemas"][name];
        assert!(component.is_object(), "{reference} is not in the document");
        return evaluate(doc, component, value, at);
    }
    let mut declared = BTreeSet::new();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        declared.extend(evaluate(doc, part, value, at)?);
    }
    if let Some(parts) = schema["oneOf"].as_array() {
        let fitting: Vec<_> = parts
            .iter()
            .filter_map(|part| evaluate(doc, part, value, at).ok())
            .collect();
        match fitting.as_slice() {
            [one] => declared.extend(one.iter().cloned()),
            _ => {
                return Err(format!(
                    "{at}: {value} fits {} of oneOf's {} schemas, not exactly one",
                    fitting.len(),
                    parts.len()
                ));
            }
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let of_type = |t: &str| match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("a type this test does not know: {other}"),
    };
    if !types.is_empty() && !types.iter().any(|t| of_type(t)) {
        return Err(format!("{at}: {value} is not of type {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(minimum) = schema["minimum"].as_f64()
        && value.as_f64().is_some_and(|n| n < minimum)
    {
        return Err(format!("{at}: {value} is below the minimum {minimum}"));
    }
    if schema["format"] == "date-time"
        && let Some(text) = value.as_str()
        && text.parse::<jiff::Timestamp>().is_err()
    {
        return Err(format!("{at}: {text:?} is not an RFC 3339 date-time"));
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{at}.{key} is required but missing"));
            }
        }
        for (key, property) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(field) = object.get(key) {
                fits(doc, property, field, &format!("{at}.{key}"))?;
            }
            declared.insert(key.clone());
        }
    }
    if let Some(items) = value.as_array().filter(|_| schema["items"].is_object()) {
        for (i, item) in items.iter().enumerate() {
            fits(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(declared)
}

/// A value the schema allows: each required property, a string, a whole number at the minimum.
fn example(doc: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return example(doc, &doc["components"]["schemas"][name]);
    }
    match schema["type"].as_str() {
        Some("object") => schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|key| {
                let key = key.as_str().unwrap();
                (key.to_owned(), example(doc, &schema["properties"][key]))
            })
            .collect(),
        Some("string") => json!("checked against the document"),
        Some("integer") => json!(schema["minimum"].as_i64().unwrap_or(1)),
        _ => panic!("no example for {schema}: teach this test the schema"),
    }
}

/// The example body of the operation's JSON request body, if it takes one.
fn request_body(doc: &Value, operation: &Value) -> Option<Value> {
    let body = operation.get("requestBody")?;
    let schema = &body["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "a request body that is not JSON: {body}"
    );
    Some(example(doc, schema))
}

#[tokio::test]
async fn the_document_is_openapi_3_and_lists_exactly_the_api_v1_routes() {
    let app = app().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "recoup");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(doc["security"], json!([{"bearer": []}]));

    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, operation)| {
            assert!(
                operation.get("security").is_none(),
                "{method} {path} must not lift the document's bearer requirement"
            );
            (method, path)
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, served);
}

#[tokio::test]
async fn every_documented_operation_answers_only_as_documented() {
    let app = app().await;
    let doc = document(&app).await;
    for (method, template, operation) in operations(&doc) {
        let path = filled(&operation, &template, "nothing_here");
        let body = request_body(&doc, &operation);
        let what = format!("{method} {path}");

        let answer = call(&app, &method, &path, body.as_ref(), true).await;
        assert_ne!(answer.status, 405, "{what}: the route is not served");
        answers_as_documented(&doc, &operation, &what, &answer);

        let refused = call(&app, &method, &path, body.as_ref(), false).await;
        assert_eq!(refused.status, 401, "{what} without a token");
        answers_as_documented(
            &doc,
            &operation,
            &format!("{what} without a token"),
            &refused,
        );

        if body.is_some() {
            let bad = call(&app, &method, &path, Some(&json!({"not": "it"})), true).await;
            assert_eq!(bad.status, 400, "{what} with a body of the wrong shape");
            answers_as_documented(&doc, &operation, &format!("{what} with a bad body"), &bad);
        }
    }
}

#[tokio::test]
async fn a_case_fits_the_documented_schemas_on_every_route() {
    let app = app().await;
    let doc = document(&app).await;
    let case = &doc["components"]["schemas"]["Case"];
    for field in [
        "invoice_id",
        "customer_id",
        "subscription_id",
        "amount_due",
        "currency",
        "state",
        "customer_timezone",
        "decline",
        "attempts",
        "next_attempt_at",
        "nudges",
        "recovered_by",
        "decision",
        "timeline",
    ] {
        assert!(
            case["properties"][field].is_object(),
            "the documented case field {field} is not in the Case schema"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["State"]["enum"],
        json!([
            "retrying",
            "awaiting_customer",
            "recovered",
            "paused",
            "canceled",
            "closed",
            "on_hold"
        ])
    );
    let next = &case["properties"]["next_attempt_at"];
    assert_eq!(next["type"], json!(["string", "null"]));
    assert_eq!(next["format"], "date-time");

    let mut failed: Value = serde_json::from_slice(&fixture("invoice.payment_failed")).unwrap();
    failed["created"] = unix_now().into();
    app.deliver(serde_json::to_vec(&failed).unwrap()).await;
    app.case_when(INVOICE, |c| {
        c["timers"].as_array().is_some_and(|t| !t.is_empty())
    })
    .await;

    let why = json!({"reason": "checking the document"});
    let seconds = json!({"seconds": 60});
    // In this order the case is held, refused a retry while held, resumed and retried.
    let steps: [(&str, &str, &str, Option<&Value>, u16); 10] = [
        ("get", "/api/v1/invoices/{id}", INVOICE, None, 200),
        ("get", "/api/v1/experiments", "", None, 200),
        ("get", "/api/v1/dashboard", "", None, 200),
        ("get", "/api/v1/customers/{id}", CUSTOMER, None, 200),
        ("get", "/api/v1/subscriptions/{id}", SUBSCRIPTION, None, 200),
        ("post", "/api/v1/clock/advance", "", Some(&seconds), 200),
        (
            "post",
            "/api/v1/invoices/{id}/hold",
            INVOICE,
            Some(&why),
            200,
        ),
        (
            "post",
            "/api/v1/invoices/{id}/retry",
            INVOICE,
            Some(&why),
            409,
        ),
        (
            "post",
            "/api/v1/invoices/{id}/resume",
            INVOICE,
            Some(&why),
            200,
        ),
        (
            "post",
            "/api/v1/invoices/{id}/retry",
            INVOICE,
            Some(&why),
            202,
        ),
    ];
    for (method, template, id, body, status) in steps {
        let operation = &doc["paths"][template][method];
        let path = filled(operation, template, id);
        let answer = call(&app, method, &path, body, true).await;
        let what = format!("{method} {path}");
        assert_eq!(answer.status, status, "{what}: {}", answer.text);
        answers_as_documented(&doc, operation, &what, &answer);
    }
}
