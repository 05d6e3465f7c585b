//! What `hookgate queue …` prints on a terminal: the admin API's JSON answers
//! ([`super::api`]) as aligned tables and short sentences. Off a terminal, or with
//! `--json`, the JSON is printed as it came, for scripts.

use std::fmt::Write as _;

use serde_json::Value;

/// Which answer is being shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Routes,
    Route,
    List,
    Show,
    /// `retry`, `retry-dead`, `drop`: a count of what changed.
    Changed,
    /// `pause`, `resume`: the route's state now.
    Paused,
    /// A replay job (or a dry run's count).
    Replay,
    /// The latest replay jobs.
    Replays,
    /// `hookgate filter test`: how many events a filter takes.
    FilterTest,
}

/// `answer` (the API's JSON) as a person reads it.
pub fn render(view: View, answer: &Value, now_ms: i64) -> String {
    match view {
        View::Routes => routes(answer["routes"].as_array().map_or(&[][..], |r| r), now_ms),
        View::Route => routes(std::slice::from_ref(answer), now_ms),
        View::List => list(answer),
        View::Show => show(answer),
        View::Changed => changed(answer),
        View::Paused => paused(answer, now_ms),
        View::Replay => replay(answer),
        View::Replays => replays(answer["replays"].as_array().map_or(&[][..], |r| r)),
        View::FilterTest => filter_test(answer),
    }
}

/// How many of the events looked at a filter takes, and a few of each.
fn filter_test(answer: &Value) -> String {
    let ids = |key: &str| {
        answer[key].as_array().map_or(String::new(), |ids| {
            ids.iter().map(text).collect::<Vec<_>>().join("\n  ")
        })
    };
    let mut out = format!(
        "{}: the filter takes {} of {} stored events\n",
        text(&answer["route"]),
        text(&answer["matched"]),
        text(&answer["examined"])
    );
    for (key, title) in [("matched_ids", "taken"), ("not_matched_ids", "left out")] {
        let list = ids(key);
        if !list.is_empty() {
            let _ = write!(out, "{title}:\n  {list}\n");
        }
    }
    out
}

/// A dry run's count, or a job's progress.
fn replay(answer: &Value) -> String {
    if answer["dry_run"] == Value::Bool(true) {
        return format!(
            "would replay {} deliver{} (dry run; nothing sent: add --yes to start it)\n",
            text(&answer["matched"]),
            if answer["matched"] == 1 { "y" } else { "ies" }
        );
    }
    replays(std::slice::from_ref(answer))
}

fn replays(jobs: &[Value]) -> String {
    if jobs.is_empty() {
        return "no replay jobs\n".into();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let spec = &j["spec"];
            let to = match (&spec["destination"], &spec["to"]) {
                (from, Value::Null) => text(from),
                (Value::Null, to) => format!("-> {}", text(to)),
                (from, to) => format!("{} -> {}", text(from), text(to)),
            };
            vec![
                text(&j["id"]),
                text(&spec["route"]),
                to,
                match &j["error"] {
                    Value::Null => text(&j["state"]),
                    e => format!("{} ({})", text(&j["state"]), text(e)),
                },
                format!("{}/{}", text(&j["replayed"]), text(&j["matched"])),
                text(&j["skipped"]),
                text(&j["created_at"]),
            ]
        })
        .collect();
    table(
        &[
            "JOB",
            "ROUTE",
            "DESTINATION",
            "STATE",
            "REPLAYED",
            "SKIPPED",
            "STARTED",
        ],
        &rows,
    )
}

/// Columns padded to their widest cell, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `12s`, `4m10s`, `3h02m`, `2d05h`.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Unix ms of an RFC 3339 time the API wrote.
fn ms_of(v: &Value) -> Option<i64> {
    let t = humantime::parse_rfc3339(v.as_str()?).ok()?;
    Some(crate::delivery::UnixMs::from(t).as_i64())
}

/// A route with one unnamed destination is one line; a route with `destinations:` is a
/// line per destination (`route/destination`).
fn routes(routes: &[Value], now_ms: i64) -> String {
    if routes.is_empty() {
        return "no queued routes\n".into();
    }
    let mut lines: Vec<(String, &Value)> = Vec::new();
    for r in routes {
        let dests = r["destinations"].as_array().map_or(&[][..], |d| d);
        match dests {
            [one] if one["destination"] == "" => lines.push((text(&r["route"]), r)),
            [] => lines.push((text(&r["route"]), r)),
            _ => {
                for d in dests {
                    let name = format!("{}/{}", text(&r["route"]), text(&d["destination"]));
                    lines.push((name, d));
                }
            }
        }
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|(name, r)| {
            let app = match (ms_of(&r["app_down_since"]), ms_of(&r["next_probe_at"])) {
                _ if ms_of(&r["paused_since"]).is_some() => format!(
                    "paused {} ago by an operator",
                    age((now_ms - ms_of(&r["paused_since"]).unwrap_or(now_ms)) / 1000)
                ),
                _ if matches!(r["breaker"].as_str(), Some("open" | "half_open")) => format!(
                    "breaker {} for {}",
                    text(&r["breaker"]).replace('_', "-"),
                    age((now_ms - ms_of(&r["breaker_since"]).unwrap_or(now_ms)) / 1000)
                ),
                (Some(since), probe) => {
                    let mut s = format!("down {} (held back)", age((now_ms - since) / 1000));
                    if let Some(p) = probe {
                        let _ = write!(s, ", next probe in {}", age((p - now_ms + 999) / 1000));
                    }
                    s
                }
                (None, _) if r["configured"] == Value::Bool(false) => {
                    "not queued in this configuration".into()
                }
                (None, _) => "answering".into(),
            };
            vec![
                name.clone(),
                text(&r["depth"]["queued"]),
                text(&r["depth"]["delivering"]),
                text(&r["depth"]["retrying"]),
                text(&r["depth"]["dead"]),
                r["oldest_pending_age_seconds"]
                    .as_i64()
                    .map_or("-".into(), age),
                format!(
                    "{}/{}",
                    text(&r["leased_here"]),
                    r["concurrency"]
                        .as_u64()
                        .map_or("-".into(), |c| (c * 2).to_string())
                ),
                app,
            ]
        })
        .collect();
    table(
        &[
            "ROUTE",
            "QUEUED",
            "DELIVERING",
            "RETRYING",
            "DEAD",
            "OLDEST",
            "LEASED",
            "APP",
        ],
        &rows,
    )
}

fn list(answer: &Value) -> String {
    let events = answer["events"].as_array().map_or(&[][..], |e| e);
    if events.is_empty() {
        return "no events\n".into();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let last = match (&e["last_status"], &e["last_error"]) {
                (Value::Null, Value::Null) => "-".to_owned(),
                (s, Value::Null) => text(s),
                (_, err) => text(err),
            };
            let when = match e["state"].as_str() {
                Some("delivered") | Some("dead") => text(&e["finished_at"]),
                _ => text(&e["next_attempt_at"]),
            };
            let state = match e["dead_reason"].as_str() {
                Some(reason) => format!("dead ({reason})"),
                None => text(&e["state"]),
            };
            // A route with destinations shows which one: `route/destination`.
            let route = match e["destination"].as_str() {
                Some(d) if !d.is_empty() => format!("{}/{d}", text(&e["route"])),
                _ => text(&e["route"]),
            };
            vec![
                text(&e["id"]),
                route,
                state,
                text(&e["attempts"]),
                text(&e["received_at"]),
                when,
                last,
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "ROUTE",
            "STATE",
            "ATTEMPTS",
            "RECEIVED",
            "NEXT/FINISHED",
            "LAST",
        ],
        &rows,
    );
    if let Some(next) = answer["next_after"].as_str() {
        let _ = writeln!(out, "more: --after {next}");
    }
    out
}

fn show(e: &Value) -> String {
    let mut out = String::new();
    let mut field = |name: &str, v: String| {
        let _ = writeln!(out, "{name:<16} {v}");
    };
    field("id", text(&e["id"]));
    field("route", text(&e["route"]));
    let state = match e["dead_reason"].as_str() {
        Some(reason) => format!("dead ({reason})"),
        None => text(&e["state"]),
    };
    field("state", state);
    field(
        "attempts",
        format!(
            "{} ({} since the last retry)",
            text(&e["attempts"]),
            text(&e["attempts_since_retry"])
        ),
    );
    field("received", text(&e["received_at"]));
    field("next attempt", text(&e["next_attempt_at"]));
    field("finished", text(&e["finished_at"]));
    field("last status", text(&e["last_status"]));
    field("last error", text(&e["last_error"]));
    field("idempotency key", text(&e["idempotency_key"]));
    field(
        "request",
        format!(
            "{} {} ({} body bytes)",
            text(&e["method"]),
            text(&e["target"]),
            text(&e["body_bytes"])
        ),
    );
    if let Some(headers) = e["headers"].as_array() {
        out.push('\n');
        for h in headers {
            let _ = writeln!(out, "{}: {}", text(&h[0]), text(&h[1]));
        }
    }
    match (&e["body"], &e["body_base64"]) {
        (Value::String(body), _) => {
            out.push('\n');
            out.push_str(body);
            if !body.ends_with('\n') {
                out.push('\n');
            }
        }
        (_, Value::String(b64)) => {
            let _ = writeln!(out, "\n(body is not UTF-8; base64) {b64}");
        }
        _ => {}
    }
    out
}

/// A pause or resume: what the route's delivery is now, and since when.
fn paused(answer: &Value, now_ms: i64) -> String {
    let route = text(&answer["route"]);
    let since = |key: &str| ms_of(&answer[key]).map(|ms| age((now_ms - ms).max(0) / 1000));
    match (answer["paused"].as_bool(), answer["changed"].as_bool()) {
        (Some(true), Some(true)) => format!("{route}: paused; events are stored, none delivered\n"),
        (Some(true), _) => format!(
            "{route}: already paused (for {})\n",
            since("paused_since").unwrap_or_else(|| "-".into())
        ),
        (_, Some(true)) => format!(
            "{route}: resumed after {}; what waited is delivered\n",
            since("was_paused_since").unwrap_or_else(|| "-".into())
        ),
        _ => format!("{route}: was not paused\n"),
    }
}

fn changed(answer: &Value) -> String {
    let (verb, n) = [("retried", "retried"), ("dropped", "dropped")]
        .iter()
        .find_map(|(key, verb)| answer[*key].as_u64().map(|n| (*verb, n)))
        .unwrap_or(("changed", 0));
    format!("{verb} {n} event{}\n", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_765_000_000_000;

    fn rfc3339(ms: i64) -> String {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
        )
        .to_string()
    }

    #[test]
    fn routes_show_depth_age_leases_and_whether_the_app_is_held_back() {
        let answer = json!({"routes": [
            {"route": "stripe", "configured": true, "concurrency": 16,
             "depth": {"queued": 1200, "delivering": 32, "retrying": 3, "dead": 0},
             "oldest_pending_age_seconds": 250, "leased_here": 32,
             "app_down_since": null, "held_back": false, "next_probe_at": null},
            {"route": "github", "configured": true, "concurrency": 4,
             "depth": {"queued": 7, "delivering": 1, "retrying": 0, "dead": 2},
             "oldest_pending_age_seconds": 75, "leased_here": 1,
             "app_down_since": rfc3339(NOW - 90_000), "held_back": true,
             "next_probe_at": rfc3339(NOW + 12_000)},
        ]});
        let out = render(View::Routes, &answer, NOW);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ROUTE   QUEUED  DELIVERING"), "{out}");
        assert!(lines[1].starts_with("stripe  1200    32 "), "{out}");
        assert!(lines[1].contains("4m10s"), "{out}");
        assert!(lines[1].contains("32/32"), "{out}");
        assert!(lines[1].ends_with("answering"), "{out}");
        assert!(
            lines[2].ends_with("down 1m30s (held back), next probe in 12s"),
            "{out}"
        );
    }

    #[test]
    fn a_route_with_destinations_is_a_line_per_destination_and_a_replay_reads_as_progress() {
        let dest = |name: &str, queued: u64, paused: serde_json::Value| {
            json!({"destination": name, "configured": true, "concurrency": 2,
                   "depth": {"queued": queued, "delivering": 0, "retrying": 0, "dead": 0},
                   "oldest_pending_age_seconds": null, "leased_here": 0,
                   "app_down_since": null, "held_back": false, "next_probe_at": null,
                   "paused_since": paused, "breaker": "closed", "breaker_since": null})
        };
        let answer = json!({"routes": [
            {"route": "shop", "depth": {}, "destinations": [
                dest("billing", 0, serde_json::Value::Null),
                dest("analytics", 10, json!(rfc3339(NOW - 60_000))),
            ]},
        ]});
        let out = render(View::Routes, &answer, NOW);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[1].starts_with("shop/billing "), "{out}");
        assert!(lines[2].starts_with("shop/analytics  10"), "{out}");
        assert!(
            lines[2].ends_with("paused 1m00s ago by an operator"),
            "{out}"
        );

        let dry = json!({"dry_run": true, "matched": 1240});
        assert_eq!(
            render(View::Replay, &dry, NOW),
            "would replay 1240 deliveries (dry run; nothing sent: add --yes to start it)\n"
        );
        let job = json!({"id": "j1", "spec": {"route": "shop", "destination": "billing",
                         "to": "staging"}, "state": "running", "matched": 1240,
                         "replayed": 200, "skipped": 3, "error": null,
                         "created_at": rfc3339(NOW)});
        let out = render(View::Replay, &job, NOW);
        let row = out.lines().nth(1).unwrap();
        for part in [
            "j1",
            "shop",
            "billing -> staging",
            "running",
            "200/1240",
            "3",
        ] {
            assert!(row.contains(part), "{part}: {out}");
        }
    }

    #[test]
    fn a_listing_is_one_line_per_event_with_its_real_attempts_and_why_it_waits() {
        let answer = json!({"events": [
            {"id": "a1", "route": "github", "state": "retrying", "attempts": 3,
             "received_at": "2026-12-06T00:00:00.000Z",
             "next_attempt_at": "2026-12-06T00:01:00.000Z", "finished_at": null,
             "last_status": 503, "last_error": "app answered 503", "dead_reason": null},
            {"id": "a2", "route": "github", "state": "dead", "attempts": 1,
             "received_at": "2026-12-06T00:00:01.000Z", "next_attempt_at": null,
             "finished_at": "2026-12-06T00:00:02.000Z",
             "last_status": 422, "last_error": "app answered 422", "dead_reason": "refused"},
        ], "next_after": "a2"});
        let out = render(View::List, &answer, NOW);
        assert!(out.contains("a1  github  retrying"), "{out}");
        assert!(
            out.contains("2026-12-06T00:01:00.000Z  app answered 503"),
            "{out}"
        );
        assert!(out.contains("dead (refused)"), "{out}");
        assert!(out.ends_with("more: --after a2\n"), "{out}");
        assert_eq!(
            render(View::List, &json!({"events": []}), NOW),
            "no events\n"
        );
    }

    #[test]
    fn a_pause_and_a_resume_say_what_delivery_is_now() {
        let at = rfc3339(NOW - 180_000);
        assert_eq!(
            render(
                View::Paused,
                &json!({"route": "stripe", "paused": true, "changed": true, "paused_since": at}),
                NOW
            ),
            "stripe: paused; events are stored, none delivered\n"
        );
        assert_eq!(
            render(
                View::Paused,
                &json!({"route": "stripe", "paused": true, "changed": false, "paused_since": at}),
                NOW
            ),
            "stripe: already paused (for 3m00s)\n"
        );
        assert_eq!(
            render(
                View::Paused,
                &json!({"route": "stripe", "paused": false, "changed": true, "was_paused_since": at}),
                NOW
            ),
            "stripe: resumed after 3m00s; what waited is delivered\n"
        );
        assert_eq!(
            render(
                View::Paused,
                &json!({"route": "stripe", "paused": false, "changed": false}),
                NOW
            ),
            "stripe: was not paused\n"
        );
        let routes = json!({"routes": [{"route": "stripe", "configured": true, "concurrency": 4,
            "depth": {"queued": 7, "delivering": 0, "retrying": 0, "dead": 0},
            "oldest_pending_age_seconds": 60, "leased_here": 0, "app_down_since": null,
            "held_back": false, "next_probe_at": null, "paused_since": at}]});
        assert!(render(View::Routes, &routes, NOW).contains("paused 3m00s ago by an operator"));
        let mut open = routes.clone();
        open["routes"][0]["paused_since"] = serde_json::Value::Null;
        open["routes"][0]["breaker"] = json!("open");
        open["routes"][0]["breaker_since"] = json!(at);
        assert!(render(View::Routes, &open, NOW).contains("breaker open for 3m00s"));
    }

    #[test]
    fn changes_are_counted_in_a_sentence() {
        assert_eq!(
            render(View::Changed, &json!({"retried": 1}), NOW),
            "retried 1 event\n"
        );
        assert_eq!(
            render(View::Changed, &json!({"dropped": 3}), NOW),
            "dropped 3 events\n"
        );
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(61), "1m01s");
        assert_eq!(age(3_660), "1h01m");
        assert_eq!(age(90_000), "1d01h");
    }
}
