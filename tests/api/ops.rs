//! Operations: every metric the Grafana dashboard and the Prometheus alerts query is one
//! `chatty::metrics::names` lists and a node exports, so a renamed metric breaks this test
//! instead of silently blanking a panel or disarming an alert; and what a node exports is
//! what the table says, with its HELP text and type.

use std::{collections::BTreeSet, time::Duration};

use chatty::metrics::names::{self, Kind};
use chatty_testkit::SioClient;
use serde_json::{Value, json};

use crate::helpers::{name, spawn_app};

const DASHBOARD: &str = include_str!("../../deploy/grafana/chatty.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");
const WAIT: Duration = Duration::from_secs(5);

/// Keywords whose parenthesised list holds label names, not metrics.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The other PromQL words that look like metric names: aggregations (which may be followed
/// by `by` rather than a parenthesis), operators and literals.
const KEYWORDS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Series Prometheus makes itself for every target.
const SYNTHETIC: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

/// Metric names in a PromQL expression: every identifier that is not a function, keyword,
/// label name (in `{...}` or after `by`/`on`/...), range or string. Names keep their
/// `_bucket`/`_sum`/`_count` suffix, which is how they appear in the exposition too.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop strings, label matchers and ranges/subqueries: nothing in them is a metric name.
    let mut plain = String::with_capacity(expr.len());
    let mut closing: Option<char> = None;
    for c in expr.chars() {
        match closing {
            Some(end) if c == end => closing = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' | '`' => closing = Some(c),
                '{' => closing = Some('}'),
                '[' => closing = Some(']'),
                _ => plain.push(c),
            },
        }
    }

    let chars: Vec<char> = plain.chars().collect();
    let next_non_space = |from: usize| chars[from..].iter().copied().find(|c| !c.is_whitespace());
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`offset 10m`, `1e9`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if LABEL_LISTS.contains(&word.as_str()) && next_non_space(i) == Some('(') {
                // Skip `by (le, instance)` and the like.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            } else if next_non_space(i) == Some('(')
                || KEYWORDS.contains(&word.as_str())
                || LABEL_LISTS.contains(&word.as_str())
                || SYNTHETIC.contains(&word.as_str())
                || word.starts_with('$')
            {
                // A function call, a keyword, Prometheus' own series or a Grafana variable.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every PromQL expression of the dashboard: panel targets, and the metric selector of
/// `label_values(selector, label)` template queries.
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    ("query", Value::String(q)) => out.extend(label_values_selector(q)),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The selector of `label_values(selector, label)`; None for other template queries.
fn label_values_selector(query: &str) -> Option<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.to_owned())
}

/// The `expr:` of every rule in a Prometheus rules file, whether written inline or as a
/// block scalar (`expr: >-` followed by indented lines). Plain text handling keeps a YAML
/// crate out of the dependencies.
fn alert_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if matches!(rest, ">" | ">-" | "|" | "|-" | ">+" | "|+") {
            let indent = line.len() - line.trim_start().len();
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            exprs.push(block.join(" "));
        } else {
            exprs.push(rest.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
    }
    exprs
}

/// Suffixes of the series a histogram exposes.
const HISTOGRAM_SERIES: &[&str] = &["_bucket", "_sum", "_count"];

/// The metric a queried series belongs to (a histogram's `_bucket`, `_sum` and `_count`
/// belong to it), with its kind; None for the unprefixed process metrics, which
/// `metrics-process` describes.
fn family(series: &str) -> Option<(&'static str, Kind)> {
    names::ALL.iter().find_map(|m| {
        let rest = series.strip_prefix(m.name)?;
        (rest.is_empty() || (m.kind == Kind::Histogram && HISTOGRAM_SERIES.contains(&rest)))
            .then_some((m.name, m.kind))
    })
}

/// The names of the dashboard's and the alerts' queries.
fn queried_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let dashboard: Value =
        serde_json::from_str(DASHBOARD).expect("deploy/grafana/chatty.json is valid JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let dashboard_names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let rules = alert_exprs(ALERTS);
    assert_eq!(
        rules.len(),
        ALERTS.matches("- alert:").count(),
        "an alert without a readable expr: {rules:?}"
    );
    let alert_names: BTreeSet<String> = rules.iter().flat_map(|e| metric_names(e)).collect();
    // Guards against a parser that quietly finds nothing.
    assert!(
        dashboard_names.len() >= 20,
        "too few metrics found in the dashboard: {dashboard_names:?}"
    );
    assert!(
        alert_names.len() >= 12,
        "too few metrics found in the alerts: {alert_names:?}"
    );
    (dashboard_names, alert_names)
}

/// Whether the exposition text has a sample of `name` (any labels).
fn exported(text: &str, name: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[test]
fn metric_names_are_found_in_promql_and_nothing_else_is() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, instance) (rate(chatty_fanout_latency_seconds_bucket{job=~"$job", le!="x"}[$__rate_interval]))) > 0.25"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["chatty_fanout_latency_seconds_bucket".to_owned()])
    );
    let names = metric_names(
        r#"sum by (job) (chatty_socket_connections{namespace="/"}) < 0.5 * sum by (job) (chatty_socket_connections offset 10m)
           and on() chatty_db_pool_connections{state="used"} / ignoring(state) chatty_db_pool_connections > 900 * 1024 or vector(0) + up"#,
    );
    let expected: BTreeSet<String> = ["chatty_db_pool_connections", "chatty_socket_connections"]
        .map(str::to_owned)
        .into();
    assert_eq!(names, expected);
    assert_eq!(
        label_values_selector(r#"label_values(chatty_node_draining{job=~"$job"}, instance)"#)
            .as_deref(),
        Some(r#"chatty_node_draining{job=~"$job"}"#)
    );
    assert_eq!(
        alert_exprs(
            "      - alert: A\n        expr: >-\n          a_total\n            / b_total\n        for: 1m\n      - alert: B\n        expr: c == 0\n"
        ),
        vec!["a_total / b_total", "c == 0"]
    );
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_in_the_table() {
    let (dashboard_names, alert_names) = queried_names();
    let unknown: Vec<&String> = dashboard_names
        .iter()
        .chain(&alert_names)
        .filter(|n| family(n).is_none() && !names::PROCESS.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "queried but not in chatty::metrics::names: {unknown:?}"
    );
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    // Arrange: the names the dashboard and the alerts query
    let (dashboard_names, alert_names) = queried_names();

    // Act: a node with enough traffic that lazily created series exist
    let app = spawn_app().await;
    let alice = app.register(&name("ops")).await;
    let bob = app.register(&name("ops")).await;
    let conv = app.conversation_of(&[&alice, &bob]).await;
    let alice_sock = app.socket(&alice.token).await;
    let mut bob_sock = app.socket(&bob.token).await;
    let _notes = app.notifications_socket(&bob.token).await;
    let joined = bob_sock
        .emit_with_ack("joinConversation", &json!({ "conversationId": conv }), WAIT)
        .await
        .unwrap();
    assert_eq!(joined["ok"], true, "{joined}");
    let typed = alice_sock
        .emit_with_ack(
            "typing",
            &json!({ "conversationId": conv, "isTyping": true }),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(typed["ok"], true, "{typed}");
    bob_sock
        .next_event("userTyping", WAIT)
        .await
        .expect("typing crosses the bus"); // events out, fan-out latency
    let bad = alice_sock
        .emit_with_ack("typing", &json!({ "isTyping": true }), WAIT)
        .await
        .unwrap();
    assert_eq!(bad["ok"], false, "{bad}"); // names::SOCKET_EVENT_ERRORS
    assert!(
        SioClient::connect(&app.address, "/", json!({}))
            .await
            .is_err()
    ); // names::SOCKET_AUTH_REFUSED

    // The sampler ticks at start and every 5 s; poll until its series are in.
    let needed: BTreeSet<&String> = dashboard_names.iter().chain(&alert_names).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut missing: Vec<&String>;
    let mut text: String;
    loop {
        let resp = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert!(resp.status().is_success());
        text = resp.text().await.expect("metrics text");
        missing = needed
            .iter()
            .copied()
            .filter(|n| !exported(&text, n))
            .collect();
        if missing.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Assert
    assert!(
        missing.is_empty(),
        "the dashboard or the alerts query metrics this node does not export: {missing:?} (dashboard: {dashboard_names:?}, alerts: {alert_names:?})"
    );
    let undescribed: Vec<&str> = names::ALL
        .iter()
        .map(|m| (m.name, m.kind.as_str()))
        .chain(names::PROCESS.iter().map(|&n| (n, "")))
        .filter(|(name, _)| exported(&text, name) || exported(&text, &format!("{name}_count")))
        .filter(|(name, kind)| {
            !text.contains(&format!("# HELP {name} "))
                || !text.contains(&format!("# TYPE {name} {kind}"))
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        undescribed.is_empty(),
        "exported without HELP text or with another type than chatty::metrics::names says: {undescribed:?}"
    );
    assert!(text.contains(&format!("# TYPE {} counter", names::PROCESS_CPU_SECONDS)));
    let untabled: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| family(n).is_none() && !names::PROCESS.contains(n))
        .collect();
    assert!(
        untabled.is_empty(),
        "exported but missing from chatty::metrics::names: {untabled:?}"
    );
}
