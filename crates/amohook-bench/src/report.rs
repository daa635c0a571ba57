//! The bench's printed table.

pub(crate) fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| match v.as_f64() {
        Some(x) if x.fract() != 0.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.0}"),
        None => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
    };
    let rows = [
        ("accounts installed", &r["install"]["accounts"]),
        ("hook body", &r["body"]["shape"]),
        ("body bytes (mean)", &r["body"]["mean_bytes"]),
        ("ingest hooks/s", &r["ingest"]["hooks_per_second"]),
        ("ingest p50 ms", &r["ingest"]["p50_ms"]),
        ("ingest p99 ms", &r["ingest"]["p99_ms"]),
        ("ingest max ms", &r["ingest"]["max_ms"]),
        ("ingest errors", &r["ingest"]["errors"]),
        (
            "ingest notes done, s",
            &r["ingest"]["all_delivered_after_seconds"],
        ),
        (
            "notes sent during ingest",
            &r["ingest"]["notes_sent_during"],
        ),
        (
            "note requests during ingest",
            &r["ingest"]["note_requests_during"],
        ),
        (
            "amohook CPU per hook, µs",
            &r["ingest"]["amohook_cpu_us_per_hook"],
        ),
        ("plain INSERT rows/s", &r["plain_insert"]["rows_per_second"]),
        ("ingest / plain INSERT", &r["plain_insert"]["ingest_ratio"]),
        ("schema INSERT rows/s", &r["raw_insert"]["rows_per_second"]),
        ("ingest / schema INSERT", &r["raw_insert"]["ingest_ratio"]),
        (
            "pgbench schema rows/s",
            &r["pgbench_insert"]["rows_per_second"],
        ),
        (
            "ingest / pgbench schema",
            &r["pgbench_insert"]["ingest_ratio"],
        ),
        (
            "saturated notes/s",
            &r["delivery"]["saturated_notes_per_second"],
        ),
        ("ceiling (rps x 50)", &r["delivery"]["ceiling"]),
        ("of ceiling", &r["delivery"]["of_ceiling"]),
        (
            "max requests in 1 s",
            &r["delivery"]["max_requests_in_any_second"],
        ),
        ("tightest rps+1 span ms", &r["delivery"]["tightest_span_ms"]),
        ("429 answers", &r["delivery"]["responses_429"]),
        (
            "budget slots moved",
            &r["server_counters"]["amohook_budget_slots_moved_total"],
        ),
        (
            "delivery waits for intake",
            &r["server_counters"]["amohook_delivery_yields_total"],
        ),
        ("e2e light p50 ms", &r["end_to_end_ms"]["light_p50"]),
        ("e2e light p99 ms", &r["end_to_end_ms"]["light_p99"]),
        ("e2e saturated p50 ms", &r["end_to_end_ms"]["saturated_p50"]),
        ("e2e saturated p99 ms", &r["end_to_end_ms"]["saturated_p99"]),
        (
            "RSS after install KiB",
            &r["memory_kib"]["rss_after_install"],
        ),
        ("peak RSS KiB", &r["memory_kib"]["peak_rss"]),
    ];
    println!("{:<24} {:>14}", "measure", "value");
    for (name, value) in rows {
        println!("{name:<24} {:>14}", f(value));
    }
}
