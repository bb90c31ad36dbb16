//! The central backup monitor against real files, real SHA-256, a controllable clock
//! (`--now`), and a real history: SQLite (a file in the test's directory) and PostgreSQL (a
//! database made for the test and dropped after it). Every scenario runs on both, as
//! `sqlite::name` and `postgres::name`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};

use common::monitor::{daily, files, line, noise, sha, t, two_jobs, Backend, Mon, CENTRE};

/// The judged occurrences of a scan document: (job, due, status).
fn judged(v: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = v["judged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job"].as_str().unwrap().to_string(),
                j["due"].as_str().unwrap().to_string(),
                j["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn message_of(v: &Value, job: &str) -> String {
    v["judged"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["pending"].as_array().unwrap())
        .find(|j| j["job"] == job)
        .map(|j| j["message"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

both!(
    scenario_1_two_databases_both_ok_and_promoted,
    scenario_2_a_whole_site_missing,
    scenario_3_failure_and_success_in_one_report,
    scenario_4_a_stale_report_is_never_ok,
    scenario_5_a_20h_job_scanned_at_10h,
    scenario_6_an_irrelevant_report_is_recorded_as_unexpected,
    a_flipped_byte_is_transfer_integrity_failed_and_the_previous_backup_kept,
    an_identical_dump_is_unchanged,
    a_report_naming_etc_passwd_is_unknown,
    a_symbolic_link_in_the_deposit_is_not_followed,
    malformed_and_huge_reports_are_unknown,
    two_scans_never_run_at_once,
    a_scan_killed_during_promotion_is_finished_by_the_next,
    an_open_occurrence_is_judged_after_a_later_one_became_ok,
    verify_records_a_flipped_byte_as_hash_mismatch_until_the_next_good_backup,
    a_scan_killed_for_real_while_copying_across_filesystems,
    a_scan_killed_for_real_among_many_renames,
);

fn an_open_occurrence_is_judged_after_a_later_one_became_ok(b: Backend) {
    let job = "    - {id: h, company: ville, city: marseille, site: centre, database: mairie, engine: postgres, frequency: hourly, at: \":00\", grace_minutes: 60}\n";
    let m = Mon::new(b, job);
    assert_eq!(m.scan(&t(6, "10:05")).0, 0);
    // At 10:50 a report of 10:45 counts for 11:00 (the closest), which is OK at once; 10:00
    // is still open (its deadline is 11:00).
    let a = m.deposit(CENTRE, "mairie", "postgres", "h.dump", b"hourly");
    m.report(CENTRE, &t(6, "10:45"), vec![a]);
    let (code, v) = m.scan(&t(6, "10:50"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(judged(&v), [("h".into(), t(6, "11:00"), "OK".into())]);
    assert!(
        v["pending"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["due"] == t(6, "10:00")),
        "{v:#}"
    );
    // Past its deadline, 10:00 is judged, not forgotten; 11:00 is not judged twice.
    let (code, v) = m.scan(&t(6, "11:05"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(judged(&v), [("h".into(), t(6, "10:00"), "MISSING".into())]);
}

fn scenario_1_two_databases_both_ok_and_promoted(b: Backend) {
    let m = Mon::new(b, &two_jobs());
    let a = m.deposit(
        CENTRE,
        "mairie",
        "postgres",
        "mairie_full_20261206_020000.dump",
        b"pg dump bytes",
    );
    let e = m.deposit(
        CENTRE,
        "etat_civil",
        "mysql",
        "etat_civil_full_20261206_020000.sql.zst",
        b"mysql dump bytes",
    );
    m.report(CENTRE, &t(6, "02:05"), vec![a, e]);
    let (code, v) = m.scan(&t(6, "02:10"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        judged(&v),
        [
            ("centre-etat".into(), t(6, "02:00"), "OK".into()),
            ("centre-mairie".into(), t(6, "02:00"), "OK".into())
        ]
    );
    assert_eq!(
        m.validated(CENTRE, "mairie"),
        [
            "mairie_full_20261206_020000.dump",
            "mairie_full_20261206_020000.dump.json",
            "mairie_full_20261206_020000.dump.validated.json"
        ]
    );
    assert_eq!(m.validated(CENTRE, "etat_civil").len(), 3);
    // The processed report is archived once.
    assert_eq!(
        files(&m.dir.join("validated/.reports/ville/marseille/centre")),
        ["STATUS-20261206T020500Z.json"]
    );
    assert_eq!(v["archived"].as_array().unwrap().len(), 1);
    assert!(m.deposited(CENTRE, "mairie").is_empty());
    assert_eq!(
        std::fs::read(
            m.site("validated", CENTRE)
                .join("mairie/mairie_full_20261206_020000.dump")
        )
        .unwrap(),
        b"pg dump bytes"
    );
    // Nothing new afterwards; the status and the history say it.
    let (code, v) = m.scan(&t(6, "04:00"));
    assert_eq!((code, judged(&v).len()), (0, 0), "{v:#}");
    let s = m.json(&["monitor", "status", "--now", &t(6, "04:00")]);
    assert_eq!(s["status"], "ok");
    let job = &s["jobs"][0];
    assert_eq!(job["status"], "OK");
    assert_eq!(job["last_ok"], t(6, "02:00"));
    assert_eq!(job["next_due"], t(7, "02:00"));
    assert_eq!(job["last_drill"]["at"], "2026-12-01T03:00:00Z");
    let h = m.json(&["monitor", "history", "centre-mairie"]);
    assert_eq!(h["history"][0]["status"], "OK");
    assert_eq!(h["history"][0]["size_bytes"], 13);
    assert_eq!(h["history"][0]["backup_seconds"], 4.1);
    let r = m.run(&[
        "monitor",
        "status",
        "--format",
        "nagios",
        "--now",
        &t(6, "04:00"),
    ]);
    r.success().stdout_has("MAIRIE-DBA OK");
}

fn scenario_2_a_whole_site_missing(b: Backend) {
    let nord = ("ville", "marseille", "nord");
    let jobs = daily("nord-mairie", nord, "mairie", "postgres", "02:00")
        + &daily("nord-etat", nord, "etat_civil", "mysql", "02:00");
    let m = Mon::new(b, &jobs);
    // Before the deadline: nothing judged, both pending.
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!(
        (
            code,
            judged(&v).len(),
            v["pending"].as_array().unwrap().len()
        ),
        (0, 0, 2),
        "{v:#}"
    );
    let (code, v) = m.scan(&t(6, "03:00"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(
        judged(&v),
        [
            ("nord-etat".into(), t(6, "02:00"), "MISSING".into()),
            ("nord-mairie".into(), t(6, "02:00"), "MISSING".into())
        ]
    );
    assert!(message_of(&v, "nord-mairie").contains("no report from site ville/marseille/nord"));
    let s = m.json(&["monitor", "status"]);
    assert_eq!(s["status"], "critical");
    assert!(s["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == "MISSING"));
}

fn scenario_3_failure_and_success_in_one_report(b: Backend) {
    let m = Mon::new(b, &two_jobs());
    // Day 1: both good.
    let a = m.deposit(
        CENTRE,
        "mairie",
        "postgres",
        "mairie_d1.dump",
        b"mairie day 1",
    );
    let e = m.deposit(
        CENTRE,
        "etat_civil",
        "mysql",
        "etat_d1.sql.zst",
        b"etat day 1",
    );
    m.report(CENTRE, &t(5, "02:05"), vec![a, e]);
    assert_eq!(m.scan(&t(5, "03:30")).0, 0);
    // Day 2: etat_civil fails, mairie succeeds.
    let a = m.deposit(
        CENTRE,
        "mairie",
        "postgres",
        "mairie_d2.dump",
        b"mairie day 2",
    );
    let failed = json!({"database": "etat_civil", "engine": "mysql", "status": "failed",
                        "error": "mariadb-dump: Got error 28 (No space left on device)"});
    m.report(CENTRE, &t(6, "02:05"), vec![a, failed]);
    // Before the deadline the success is OK already; the failure waits for the deadline.
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-mairie".into(), t(6, "02:00"), "OK".into())]
    );
    let (code, v) = m.scan(&t(6, "03:30"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-etat".into(), t(6, "02:00"), "FAILED".into())]
    );
    assert!(message_of(&v, "centre-etat").contains("No space left on device"));
    assert!(m
        .validated(CENTRE, "etat_civil")
        .contains(&"etat_d1.sql.zst".to_string()));
    assert!(m
        .validated(CENTRE, "mairie")
        .contains(&"mairie_d2.dump".to_string()));
    assert!(!m
        .validated(CENTRE, "mairie")
        .contains(&"mairie_d1.dump".to_string()));
    // The history records the change OK -> FAILED.
    let h = m.json(&["monitor", "history", "centre-etat", "--limit", "1"]);
    assert_eq!(h["history"].as_array().unwrap().len(), 1);
    assert_eq!(h["history"][0]["status"], "FAILED");
    assert_eq!(h["history"][0]["previous_status"], "OK");
}

fn scenario_4_a_stale_report_is_never_ok(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let a = m.deposit(
        CENTRE,
        "mairie",
        "postgres",
        "mairie_old.dump",
        b"old bytes",
    );
    m.report(CENTRE, &t(2, "02:05"), vec![a]);
    let (code, v) = m.scan(&t(6, "03:30"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-mairie".into(), t(6, "02:00"), "MISSING".into())]
    );
    let msg = message_of(&v, "centre-mairie");
    assert!(
        msg.contains("STATUS.json")
            && msg.contains("stale")
            && msg.contains("2026-12-02T02:05:00Z"),
        "{msg}"
    );
    assert_eq!(m.deposited(CENTRE, "mairie").len(), 2);
    assert!(m.validated(CENTRE, "mairie").is_empty());
}

fn scenario_5_a_20h_job_scanned_at_10h(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-soir", CENTRE, "mairie", "postgres", "20:00"),
    );
    // The job appears on the 5th in the morning.
    let (code, v) = m.scan(&t(5, "08:00"));
    assert_eq!((code, judged(&v).len()), (0, 0), "{v:#}");
    let a = m.deposit(
        CENTRE,
        "mairie",
        "postgres",
        "mairie_20h.dump",
        b"evening dump",
    );
    m.report(CENTRE, &t(5, "20:05"), vec![a]);
    let (code, v) = m.scan(&t(6, "10:00"));
    assert_eq!(code, 0, "{v:#}");
    // Yesterday's 20:00 is judged; today's is not, not even pending.
    assert_eq!(
        judged(&v),
        [("centre-soir".into(), t(5, "20:00"), "OK".into())]
    );
    assert!(v["pending"].as_array().unwrap().is_empty(), "{v:#}");
    let s = m.json(&["monitor", "status", "--now", &t(6, "10:00")]);
    assert_eq!(s["jobs"][0]["next_due"], t(6, "20:00"));
    let j = m.json(&["monitor", "jobs", "--now", &t(6, "10:00")]);
    assert_eq!(j["jobs"][0]["next_due"], t(6, "20:00"));
    assert_eq!(j["jobs"][0]["schedule"], "daily 20:00 UTC");
}

fn scenario_6_an_irrelevant_report_is_recorded_as_unexpected(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let inconnu = ("ville", "marseille", "inconnu");
    let x = m.deposit(
        inconnu,
        "mairie",
        "postgres",
        "mairie.dump",
        b"who sent this",
    );
    m.report(inconnu, &t(6, "02:05"), vec![x]);
    let c = m.deposit(CENTRE, "compta", "postgres", "compta.dump", b"compta");
    m.report(CENTRE, &t(6, "02:05"), vec![c]);
    let (code, v) = m.scan(&t(6, "03:30"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-mairie".into(), t(6, "02:00"), "MISSING".into())]
    );
    let unexpected: Vec<String> = v["unexpected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["path"].as_str().unwrap(),
                u["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        unexpected
            .iter()
            .any(|u| u.contains("inconnu") && u.contains("no expected job")),
        "{unexpected:?}"
    );
    assert!(
        unexpected.iter().any(|u| u.contains("compta")),
        "{unexpected:?}"
    );
    assert!(m.validated(inconnu, "mairie").is_empty());
    let s = m.json(&["monitor", "status"]);
    assert!(s["unexpected"].as_array().unwrap().len() >= 2, "{s:#}");
}

fn a_flipped_byte_is_transfer_integrity_failed_and_the_previous_backup_kept(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let a = m.deposit(CENTRE, "mairie", "postgres", "d1.dump", b"day one");
    m.report(CENTRE, &t(5, "02:05"), vec![a]);
    assert_eq!(m.scan(&t(5, "03:30")).0, 0);
    let good = b"day two, good".to_vec();
    let mut bad = good.clone();
    bad[3] ^= 0x01;
    m.deposit(CENTRE, "mairie", "postgres", "d2.dump", &bad);
    m.report(
        CENTRE,
        &t(6, "02:05"),
        vec![line("mairie", "postgres", "d2.dump", &good)],
    );
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!(
        (code, judged(&v).len()),
        (0, 0),
        "before the deadline: pending {v:#}"
    );
    assert_eq!(v["pending"][0]["status"], "TRANSFER_INTEGRITY_FAILED");
    let (code, v) = m.scan(&t(6, "03:30"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(
        judged(&v),
        [(
            "centre-mairie".into(),
            t(6, "02:00"),
            "TRANSFER_INTEGRITY_FAILED".into()
        )]
    );
    assert!(message_of(&v, "centre-mairie").contains(&sha(&good)));
    assert!(m
        .validated(CENTRE, "mairie")
        .contains(&"d1.dump".to_string()));
    assert!(!m
        .validated(CENTRE, "mairie")
        .contains(&"d2.dump".to_string()));
    assert!(m
        .deposited(CENTRE, "mairie")
        .contains(&"d2.dump".to_string()));
}

fn an_identical_dump_is_unchanged(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let a = m.deposit(CENTRE, "mairie", "postgres", "d1.dump", b"the same bytes");
    m.report(CENTRE, &t(5, "02:05"), vec![a]);
    assert_eq!(m.scan(&t(5, "03:30")).0, 0);
    let a = m.deposit(CENTRE, "mairie", "postgres", "d2.dump", b"the same bytes");
    m.report(CENTRE, &t(6, "02:05"), vec![a]);
    let (code, v) = m.scan(&t(6, "02:10"));
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-mairie".into(), t(6, "02:00"), "UNCHANGED".into())]
    );
    assert!(message_of(&v, "centre-mairie").contains("d1.dump"));
    assert_eq!(m.json(&["monitor", "status"])["status"], "warning");
}

fn a_report_naming_etc_passwd_is_unknown(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    std::fs::create_dir_all(m.site("deposits", CENTRE).join("mairie")).unwrap();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    m.report(
        CENTRE,
        &t(6, "02:05"),
        vec![line(
            "mairie",
            "postgres",
            "../../../../../../etc/passwd",
            &passwd,
        )],
    );
    let (code, v) = m.scan(&t(6, "03:30"));
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-mairie".into(), t(6, "02:00"), "UNKNOWN".into())]
    );
    assert!(message_of(&v, "centre-mairie").contains("is not a single file name"));
    assert!(m.validated(CENTRE, "mairie").is_empty());
}

fn a_symbolic_link_in_the_deposit_is_not_followed(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let d = m.site("deposits", CENTRE).join("mairie");
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("passwd.dump")).unwrap();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    m.report(
        CENTRE,
        &t(6, "02:05"),
        vec![line("mairie", "postgres", "passwd.dump", &passwd)],
    );
    let (code, v) = m.scan(&t(6, "03:30"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(
        judged(&v),
        [(
            "centre-mairie".into(),
            t(6, "02:00"),
            "TRANSFER_INTEGRITY_FAILED".into()
        )]
    );
    assert!(message_of(&v, "centre-mairie").contains("symbolic link"));
    assert!(m.validated(CENTRE, "mairie").is_empty());
    // A linked site directory is not followed either.
    let other = ("ville", "marseille", "sud");
    let m2 = Mon::new(
        b,
        &daily("sud-mairie", other, "mairie", "postgres", "02:00"),
    );
    std::fs::create_dir_all(m2.dir.join("deposits/ville/marseille")).unwrap();
    std::os::unix::fs::symlink(m.site("deposits", CENTRE), m2.site("deposits", other)).unwrap();
    let (code, v) = m2.scan(&t(6, "03:30"));
    assert_eq!(code, 3, "{v:#}");
    assert!(message_of(&v, "sud-mairie").contains("symbolic link, not followed"));
}

fn malformed_and_huge_reports_are_unknown(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let d = m.site("deposits", CENTRE);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("STATUS.json"), "{\"agent\": {\"company\": \"ville\"").unwrap();
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!((code, judged(&v).len()), (0, 0));
    assert!(
        message_of(&v, "centre-mairie").contains("not a valid report"),
        "{v:#}"
    );
    // 100 MB: refused by its size, unread.
    let f = std::fs::File::create(d.join("STATUS.json")).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    let (code, v) = m.scan(&t(6, "03:30"));
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-mairie".into(), t(6, "02:00"), "UNKNOWN".into())]
    );
    assert!(
        message_of(&v, "centre-mairie").contains("over the limit"),
        "{v:#}"
    );
}

fn two_scans_never_run_at_once(b: Backend) {
    let m = Mon::new(b, &two_jobs());
    let a = m.deposit(
        CENTRE,
        "mairie",
        "postgres",
        "m.dump",
        &vec![7u8; 8 * 1024 * 1024],
    );
    let e = m.deposit(
        CENTRE,
        "etat_civil",
        "mysql",
        "e.sql.zst",
        &vec![9u8; 8 * 1024 * 1024],
    );
    m.report(CENTRE, &t(6, "02:05"), vec![a, e]);
    // Held by someone else: refused at once, UNKNOWN, nothing touched.
    std::fs::create_dir_all(m.dir.join("validated")).unwrap();
    let lock = std::fs::File::create(m.dir.join("validated/.monitor.lock")).unwrap();
    lock.lock().unwrap();
    let r = m.run(&["monitor", "scan", "--now", &t(6, "03:30")]);
    r.code(3).stderr_has("another scan is running");
    assert_eq!(m.deposited(CENTRE, "mairie").len(), 2);
    drop(lock);
    // Two at once: each occurrence judged and promoted exactly once.
    let now = t(6, "03:30");
    let args = ["monitor", "scan", "--now", now.as_str(), "--format", "json"];
    let spawn = || {
        m.command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (c1, c2) = (spawn(), spawn());
    let o1 = c1.wait_with_output().unwrap();
    let o2 = c2.wait_with_output().unwrap();
    let codes = [o1.status.code().unwrap(), o2.status.code().unwrap()];
    assert!(
        codes.contains(&0),
        "{codes:?} {}",
        String::from_utf8_lossy(&o2.stderr)
    );
    let mut seen = 0;
    for o in [&o1, &o2] {
        if o.status.code() == Some(0) {
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            seen += v["judged"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["new"] == true)
                .count();
        } else {
            assert_eq!(o.status.code(), Some(3));
            assert!(String::from_utf8_lossy(&o.stderr).contains("another scan is running"));
        }
    }
    assert_eq!(seen, 2);
    assert_eq!(
        m.json(&["monitor", "history", "centre-mairie"])["history"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        m.validated(CENTRE, "mairie"),
        ["m.dump", "m.dump.json", "m.dump.validated.json"]
    );
}

fn a_scan_killed_during_promotion_is_finished_by_the_next(b: Backend) {
    let m = Mon::new(b, &two_jobs());
    let a = m.deposit(CENTRE, "mairie", "postgres", "m.dump", b"mairie bytes");
    let e = m.deposit(CENTRE, "etat_civil", "mysql", "e.sql.zst", b"etat bytes");
    m.report(CENTRE, &t(6, "02:05"), vec![a, e]);
    // What a kill leaves at each step: etat_civil's copy half-written under a temporary name
    // with its record; mairie renamed into place but never recorded in the history.
    let vm = m.site("validated", CENTRE).join("mairie");
    let ve = m.site("validated", CENTRE).join("etat_civil");
    std::fs::create_dir_all(&vm).unwrap();
    std::fs::create_dir_all(&ve).unwrap();
    std::fs::write(ve.join(".e.sql.zst.tmp-999999"), b"etat b").unwrap();
    std::fs::write(ve.join("e.sql.zst.validated.json"), b"{}").unwrap();
    let record = json!({"file": "m.dump", "size_bytes": 12, "sha256": sha(b"mairie bytes"),
                        "validated_at": "2026-12-06T02:10:00Z", "job": "centre-mairie",
                        "due": "2026-12-06T02:00:00Z"});
    std::fs::write(vm.join("m.dump.validated.json"), record.to_string()).unwrap();
    std::fs::rename(
        m.site("deposits", CENTRE).join("mairie/m.dump"),
        vm.join("m.dump"),
    )
    .unwrap();
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        judged(&v),
        [
            ("centre-etat".into(), t(6, "02:00"), "OK".into()),
            ("centre-mairie".into(), t(6, "02:00"), "OK".into())
        ]
    );
    assert!(
        message_of(&v, "centre-mairie").contains("earlier scan"),
        "{v:#}"
    );
    let cleaned: Vec<String> = serde_json::from_value(v["cleaned"].clone()).unwrap();
    assert!(
        cleaned.iter().any(|c| c.contains(".e.sql.zst.tmp-999999")),
        "{cleaned:?}"
    );
    assert_eq!(
        m.validated(CENTRE, "etat_civil"),
        ["e.sql.zst", "e.sql.zst.json", "e.sql.zst.validated.json"]
    );
    assert_eq!(std::fs::read(ve.join("e.sql.zst")).unwrap(), b"etat bytes");
    // mairie's manifest, still in the deposit when the scan was killed, followed its backup.
    assert_eq!(
        m.validated(CENTRE, "mairie"),
        ["m.dump", "m.dump.json", "m.dump.validated.json"]
    );
    assert!(m.deposited(CENTRE, "mairie").is_empty());
    // A rerun records nothing twice.
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!((code, judged(&v).len()), (0, 0), "{v:#}");
    // A crash before the filesystem was synced may lose a record: the next scan rewrites it
    // from the bytes, which decide.
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let a = m.deposit(CENTRE, "mairie", "postgres", "m.dump", b"mairie bytes");
    m.report(CENTRE, &t(6, "02:05"), vec![a]);
    let vm = m.site("validated", CENTRE).join("mairie");
    std::fs::create_dir_all(&vm).unwrap();
    std::fs::rename(
        m.site("deposits", CENTRE).join("mairie/m.dump"),
        vm.join("m.dump"),
    )
    .unwrap();
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!(code, 0, "{v:#}");
    assert!(
        message_of(&v, "centre-mairie").contains("record rewritten"),
        "{v:#}"
    );
    assert!(vm.join("m.dump.validated.json").exists());
    assert!(vm.join("m.dump.json").exists());
    assert!(m.deposited(CENTRE, "mairie").is_empty());
}

/// `monitor serve` scans on its own, and stops on SIGTERM after its scan, exiting 0.
#[test]
fn serve_scans_until_sigterm() {
    let now = chrono::Utc::now();
    let due = (now - chrono::Duration::minutes(10))
        .format("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    let job = format!(
        "    - {{id: once-mairie, company: ville, city: marseille, site: centre, database: mairie, engine: postgres, frequency: once, at: \"{due}\", grace_minutes: 60}}\n"
    );
    let m = Mon::new(Backend::Sqlite, &job);
    let a = m.deposit(CENTRE, "mairie", "postgres", "m.dump", b"served bytes");
    m.report(
        CENTRE,
        &now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        vec![a],
    );
    let child = m
        .command(&["monitor", "serve", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let promoted = m.site("validated", CENTRE).join("mairie/m.dump");
    let start = std::time::Instant::now();
    while !promoted.exists() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(promoted.exists(), "serve did not promote within 20 s");
    // The record is written after the promotion: give the scan its end.
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["stopped"].clone(), v["scans"].clone()),
        (json!(true), json!(1))
    );
    let s = m.json(&["monitor", "status"]);
    assert_eq!(s["jobs"][0]["status"], "OK", "{s:#}");
}

/// The whole chain on a real PostgreSQL database: `backup`, `restore --drill`, `agent push`
/// into a deposit, `monitor scan` validating and promoting what the agent sent.
#[test]
fn agent_push_deposits_what_the_monitor_validates() {
    let env = common::Env::pg_with_schema();
    let db = env.db().name().to_string();
    let d = |p: &str| env.dir.join(p).display().to_string();
    let due = (chrono::Utc::now() - chrono::Duration::minutes(5))
        .format("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    env.write_global(&format!(
        "backup:\n  postgres:\n    dir: {}\n\
         agent:\n  company: ville\n  city: marseille\n  site: centre\n  deposit: {}\n\
         monitor:\n  deposit_dir: {}\n  validated_dir: {}\n  history: sqlite:{}\n  jobs:\n\
         \x20   - {{id: centre-db, company: ville, city: marseille, site: centre, database: {db}, engine: postgres, frequency: once, at: \"{due}\"}}\n",
        d("backups"),
        d("deposits"),
        d("deposits"),
        d("validated"),
        d("monitor.db"),
    ));
    env.run(&["backup"]).success();
    env.run(&["restore", "--drill"]).success();
    let r = env.run(&["agent", "push", "--format", "json"]);
    r.success();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["databases"][0]["status"], "success", "{v:#}");
    let file = v["databases"][0]["file"].as_str().unwrap().to_string();
    let site = env.dir.join("deposits/ville/marseille/centre");
    let status: Value =
        serde_json::from_slice(&std::fs::read(site.join("STATUS.json")).unwrap()).unwrap();
    let line = &status["databases"][0];
    assert_eq!(
        (line["database"].as_str(), line["engine"].as_str()),
        (Some(db.as_str()), Some("postgres"))
    );
    assert_eq!(line["last_drill"]["status"], "success", "{status:#}");
    let bytes = std::fs::read(site.join(&db).join(&file)).unwrap();
    assert_eq!(line["sha256"], sha(&bytes));
    assert!(site.join(&db).join(format!("{file}.json")).exists());
    // The monitor validates it and promotes it.
    let r = env.run(&["monitor", "scan", "--format", "json"]);
    r.success();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["judged"][0]["status"], "OK", "{v:#}");
    assert!(env
        .dir
        .join("validated/ville/marseille/centre")
        .join(&db)
        .join(&file)
        .exists());
    // A later failed run is reported as such, with its error; the push itself succeeds.
    let run = json!({"target": "postgres", "status": "failed",
                     "started_at": chrono::Utc::now().to_rfc3339(),
                     "finished_at": chrono::Utc::now().to_rfc3339(),
                     "error": "pg_dump: error: connection refused"});
    std::fs::write(
        env.dir.join("backups/.postgres.last_run.json"),
        run.to_string(),
    )
    .unwrap();
    let r = env.run(&["agent", "push", "--format", "json"]);
    r.success();
    let status: Value =
        serde_json::from_slice(&std::fs::read(site.join("STATUS.json")).unwrap()).unwrap();
    assert_eq!(status["databases"][0]["status"], "failed", "{status:#}");
    assert_eq!(
        status["databases"][0]["error"],
        "pg_dump: error: connection refused"
    );
}

// ---------------------------------------------------------------------------------------------
// Re-verification of the validated store (HASH_MISMATCH)

impl Mon {
    /// `monitor verify --now NOW --format json`: the exit code and the document.
    fn verify(&self, now: &str) -> (i32, Value) {
        let r = self.run(&["monitor", "verify", "--now", now, "--format", "json"]);
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}\n--- stdout\n{}\n--- stderr\n{}", r.stdout, r.stderr));
        (r.code, v)
    }
}

/// Flips one bit of byte `at` of a file, keeping its size.
fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn verify_records_a_flipped_byte_as_hash_mismatch_until_the_next_good_backup(b: Backend) {
    let m = Mon::new(
        b,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    let one = b"day one, validated and promoted";
    let a = m.deposit(CENTRE, "mairie", "postgres", "d1.dump", one);
    m.report(CENTRE, &t(5, "02:05"), vec![a]);
    assert_eq!(m.scan(&t(5, "03:30")).0, 0);
    let stored = m.site("validated", CENTRE).join("mairie/d1.dump");

    // Intact: exit 0, the job stays OK.
    let (code, v) = m.verify(&t(5, "04:00"));
    assert_eq!(code, 0, "{v:#}");
    let j = &v["jobs"][0];
    assert_eq!(
        (&j["job"], &j["status"], &j["files"][0]["verdict"]),
        (&json!("centre-mairie"), &json!("OK"), &json!("intact")),
        "{v:#}"
    );
    assert_eq!(j["files"][0]["sha256"], sha(one));
    assert_eq!(
        (&j["previous_status"], &j["current_status"]),
        (&json!("OK"), &json!("OK"))
    );

    // A bit flipped in the store, the size unchanged: HASH_MISMATCH, naming the file.
    flip(&stored, 5);
    let (code, v) = m.verify(&t(5, "05:00"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["status"], "critical");
    let j = &v["jobs"][0];
    assert_eq!(j["status"], "HASH_MISMATCH", "{v:#}");
    assert_eq!(j["files"][0]["verdict"], "mismatch");
    assert_eq!(j["files"][0]["recorded_sha256"], sha(one));
    assert_ne!(j["files"][0]["sha256"], sha(one));
    assert!(j["message"].as_str().unwrap().contains("d1.dump"), "{v:#}");
    assert_eq!(
        (&j["previous_status"], &j["current_status"]),
        (&json!("OK"), &json!("HASH_MISMATCH"))
    );
    // `monitor status` shows it, with the file, and exits CRITICAL.
    let r = m.run(&["monitor", "status", "--format", "json"]);
    r.code(2);
    let s = r.json();
    assert_eq!(s["jobs"][0]["status"], "HASH_MISMATCH", "{s:#}");
    assert!(s["jobs"][0]["message"]
        .as_str()
        .unwrap()
        .contains("d1.dump"));
    assert_eq!(s["jobs"][0]["last_ok"], t(5, "02:00"));
    m.run(&["monitor", "status", "--format", "nagios"])
        .code(2)
        .stdout_has("MAIRIE-DBA CRITICAL")
        .stdout_has("centre-mairie HASH_MISMATCH");
    // A second verification finds it again; the history holds one change, not two.
    m.run(&[
        "monitor",
        "verify",
        "--now",
        &t(5, "06:00"),
        "--format",
        "nagios",
    ])
    .code(2)
    .stdout_has("MAIRIE-DBA CRITICAL")
    .stdout_has("HASH_MISMATCH: centre-mairie (d1.dump)");
    let h = m.json(&["monitor", "history", "centre-mairie"]);
    let entries = h["history"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{h:#}");
    assert_eq!(
        (
            &entries[0]["kind"],
            &entries[0]["status"],
            &entries[0]["previous_status"]
        ),
        (
            &json!("verification"),
            &json!("HASH_MISMATCH"),
            &json!("OK")
        ),
        "{h:#}"
    );
    assert_eq!(entries[1]["kind"], "occurrence");

    // The right bytes put back (from a copy): intact again, the job OK again.
    flip(&stored, 5);
    let (code, v) = m.verify(&t(5, "07:00"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        (
            &v["jobs"][0]["previous_status"],
            &v["jobs"][0]["current_status"]
        ),
        (&json!("HASH_MISMATCH"), &json!("OK"))
    );
    assert_eq!(m.json(&["monitor", "status"])["jobs"][0]["status"], "OK");
    let h = m.json(&["monitor", "history", "centre-mairie"]);
    assert_eq!(h["history"].as_array().unwrap().len(), 3, "{h:#}");
    assert_eq!(
        (
            &h["history"][0]["status"],
            &h["history"][0]["previous_status"]
        ),
        (&json!("OK"), &json!("HASH_MISMATCH"))
    );

    // Flipped again; the next good backup, promoted in its place, brings the job back to OK.
    flip(&stored, 0);
    assert_eq!(m.verify(&t(5, "08:00")).0, 2);
    let a = m.deposit(CENTRE, "mairie", "postgres", "d2.dump", b"day two");
    m.report(CENTRE, &t(6, "02:05"), vec![a]);
    let (code, v) = m.scan(&t(6, "02:10"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        judged(&v),
        [("centre-mairie".into(), t(6, "02:00"), "OK".into())]
    );
    let r = m.run(&["monitor", "status", "--format", "json"]);
    r.code(0);
    assert_eq!(r.json()["jobs"][0]["status"], "OK");
    let h = m.json(&["monitor", "history", "centre-mairie", "--limit", "1"]);
    assert_eq!(
        (
            &h["history"][0]["kind"],
            &h["history"][0]["due"],
            &h["history"][0]["status"],
            &h["history"][0]["previous_status"]
        ),
        (
            &json!("occurrence"),
            &json!(t(6, "02:00")),
            &json!("OK"),
            &json!("HASH_MISMATCH")
        ),
        "{h:#}"
    );
    assert!(
        !stored.exists(),
        "the damaged version is beyond keep_validated"
    );
    let (code, v) = m.verify(&t(6, "03:00"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["jobs"][0]["files"][0]["file"], "d2.dump");

    // A promoted backup that disappears from the store is a HASH_MISMATCH too.
    std::fs::remove_file(m.site("validated", CENTRE).join("mairie/d2.dump")).unwrap();
    let (code, v) = m.verify(&t(6, "04:00"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["jobs"][0]["files"][0]["verdict"], "missing");
    assert!(v["jobs"][0]["message"]
        .as_str()
        .unwrap()
        .contains("d2.dump: missing"));
    assert_eq!(
        m.json(&["monitor", "status"])["jobs"][0]["status"],
        "HASH_MISMATCH"
    );
    // A scan takes its record for the leftover of a killed promotion and removes it; the
    // history still knows the backup was promoted: still missing.
    let (_, v) = m.scan(&t(6, "05:00"));
    let cleaned: Vec<String> = serde_json::from_value(v["cleaned"].clone()).unwrap();
    assert!(
        cleaned
            .iter()
            .any(|c| c.ends_with("d2.dump.validated.json")),
        "{v:#}"
    );
    let (code, v) = m.verify(&t(6, "06:00"));
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["jobs"][0]["files"][0]["verdict"], "missing");
    assert!(v["jobs"][0]["message"]
        .as_str()
        .unwrap()
        .contains("the history has it promoted"));

    // It takes the scan lock, and --job must name a job (UNKNOWN).
    let lock = std::fs::File::create(m.dir.join("validated/.monitor.lock")).unwrap();
    lock.lock().unwrap();
    m.run(&["monitor", "verify"])
        .code(3)
        .stderr_has("another scan is running");
    drop(lock);
    m.run(&["monitor", "verify", "--job", "nope"])
        .code(3)
        .stderr_has("--job `nope`");
    m.run(&["monitor", "verify", "--job", "centre-mairie"])
        .code(2);
}

// ---------------------------------------------------------------------------------------------
// A scan killed for real (SIGKILL) during its promotions

/// A directory on another filesystem than the temporary directory, with room for `bytes`:
/// deposits there make every promotion a copy (a hidden temporary file, then a rename).
fn other_filesystem(bytes: u64) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let tmp = std::env::temp_dir();
    let tmp_dev = std::fs::metadata(&tmp).unwrap().dev();
    let candidates = [
        PathBuf::from("/dev/shm"),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    ];
    for c in &candidates {
        let Ok(meta) = std::fs::metadata(c) else {
            continue;
        };
        if meta.dev() == tmp_dev {
            continue;
        }
        let path = std::ffi::CString::new(c.as_os_str().as_bytes()).unwrap();
        // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let free = if unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0 {
            st.f_bavail as u64 * st.f_frsize as u64
        } else {
            0
        };
        if free > 2 * bytes {
            return c.clone();
        }
    }
    panic!(
        "this test needs a writable directory on another filesystem than {} with {} MB free \
         (tried {candidates:?}): promotions across filesystems are copies, the slow kind a kill \
         can interrupt",
        tmp.display(),
        2 * bytes / 1_000_000
    );
}

/// A deposited backup: its database, file name and bytes.
struct Deposited {
    db: String,
    file: String,
    bytes: Vec<u8>,
}

/// `n` jobs of one site (databases db000 …), each with a backup of `size` bytes deposited and
/// named by one report.
fn many_deposits(m: &Mon, n: usize, size: usize) -> Vec<Deposited> {
    let mut lines = Vec::new();
    let mut out = Vec::new();
    for i in 0..n {
        let db = format!("db{i:03}");
        let file = format!("{db}_full_20261206_020000.dump");
        let bytes = noise(i as u64 + 1, size);
        lines.push(m.deposit(CENTRE, &db, "postgres", &file, &bytes));
        out.push(Deposited { db, file, bytes });
    }
    m.report(CENTRE, &t(6, "02:05"), lines);
    out
}

fn many_jobs(n: usize) -> String {
    (0..n)
        .map(|i| {
            let db = format!("db{i:03}");
            daily(&db, CENTRE, &db, "postgres", "02:00")
        })
        .collect()
}

/// Names in the store's database directories, as (database, name).
fn store_names(m: &Mon) -> Vec<(String, String)> {
    let site = m.site("validated", CENTRE);
    let mut out = Vec::new();
    for db in files(&site) {
        for name in files(&site.join(&db)) {
            out.push((db.clone(), name));
        }
    }
    out
}

/// Starts `monitor scan --now NOW`, polls `ready` until the kill point is reached, then kills
/// the scan with SIGKILL. Returns its pid. Fails when the scan ends before.
fn kill_scan_when(m: &Mon, now: &str, what: &str, ready: impl Fn() -> bool) -> u32 {
    use std::os::unix::process::ExitStatusExt;
    let log = m.dir.join("killed-scan.stderr");
    let mut child = m
        .command(&["monitor", "scan", "--now", now, "--format", "json"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = std::time::Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the scan ended ({status}) before {what}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no {what} within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    // SAFETY: signalling our own child by its pid; it is not reaped yet.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the scan was not killed at {what}, it ended: {status}"
    );
    pid
}

/// After a kill: each backup (and its manifest) whole in the deposit or whole in the store
/// (or in both: a copy whose source was not removed yet), never lost, never part of one under
/// a final name; besides backups, manifests and records, the store holds only hidden
/// temporary files of the killed scan: the leftovers, returned. Also returns how many backups
/// were still only in the deposit.
fn check_after_kill(m: &Mon, deposited: &[Deposited], pid: u32) -> (Vec<String>, usize) {
    let mut only_in_deposit = 0;
    for d in deposited {
        let dep = m.site("deposits", CENTRE).join(&d.db);
        let val = m.site("validated", CENTRE).join(&d.db);
        let in_dep = std::fs::read(dep.join(&d.file)).ok();
        let in_val = std::fs::read(val.join(&d.file)).ok();
        assert!(
            in_dep.is_some() || in_val.is_some(),
            "{}: neither in the deposit nor in the store",
            d.file
        );
        for (place, got) in [("deposit", &in_dep), ("store", &in_val)] {
            if let Some(got) = got {
                assert!(
                    *got == d.bytes,
                    "{} in the {place}: {} bytes that are not the {} deposited",
                    d.file,
                    got.len(),
                    d.bytes.len()
                );
            }
        }
        if in_val.is_none() {
            only_in_deposit += 1;
        }
        let manifest = format!("{}.json", d.file);
        assert!(
            dep.join(&manifest).exists() || val.join(&manifest).exists(),
            "{manifest}: lost"
        );
    }
    let mut leftovers = Vec::new();
    for (db, name) in store_names(m) {
        let path = m.site("validated", CENTRE).join(&db).join(&name);
        let d = deposited.iter().find(|d| d.db == db).unwrap();
        if name.starts_with('.') {
            assert!(
                name.starts_with(&format!(".{}", d.file)) && name.ends_with(&format!(".tmp-{pid}")),
                "{}: hidden, but not a temporary file of the killed scan",
                path.display()
            );
            leftovers.push(path.display().to_string());
        } else if name == format!("{}.json", d.file) {
            assert_eq!(std::fs::read(&path).unwrap(), b"{\"manifest\": true}");
        } else if name == format!("{}.validated.json", d.file) {
            let r: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(
                (&r["file"], &r["sha256"]),
                (&json!(d.file), &json!(sha(&d.bytes)))
            );
        } else {
            assert_eq!(name, d.file, "{}: unexpected in the store", path.display());
        }
    }
    (leftovers, only_in_deposit)
}

/// After a kill: `monitor verify` sees no HASH_MISMATCH and names the leftovers; the next
/// scan removes them, judges every job OK and finishes every promotion.
fn finish_after_kill(m: &Mon, deposited: &[Deposited], leftovers: &[String]) {
    let (code, v) = m.verify(&t(6, "02:20"));
    assert_eq!(code, 0, "a killed scan is not bit rot: {v:#}");
    let listed: Vec<&str> = v["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    for l in leftovers {
        assert!(listed.contains(&l.as_str()), "{l} not among {listed:?}");
    }
    let (code, v) = m.scan(&t(6, "02:30"));
    assert_eq!(code, 0, "{v:#}");
    let judged = judged(&v);
    assert_eq!(judged.len(), deposited.len(), "{v:#}");
    assert!(judged.iter().all(|(_, _, s)| s == "OK"), "{judged:?}");
    let cleaned: Vec<String> = serde_json::from_value(v["cleaned"].clone()).unwrap();
    for l in leftovers {
        assert!(cleaned.contains(l), "{l} not removed: {cleaned:?}");
    }
    for d in deposited {
        let record = format!("{}.validated.json", d.file);
        let manifest = format!("{}.json", d.file);
        let mut want = vec![d.file.clone(), manifest, record];
        want.sort();
        assert_eq!(m.validated(CENTRE, &d.db), want);
        assert_eq!(
            std::fs::read(m.site("validated", CENTRE).join(&d.db).join(&d.file)).unwrap(),
            d.bytes
        );
        assert!(m.deposited(CENTRE, &d.db).is_empty(), "{}", d.db);
    }
    let s = m.json(&["monitor", "status"]);
    assert_eq!(s["status"], "ok", "{s:#}");
}

/// Deposits on another filesystem: each promotion is a copy into a hidden temporary name,
/// hashed again, fsynced and renamed. Killed while the first copy is under way, and once two
/// backups are promoted and the others not.
fn a_scan_killed_for_real_while_copying_across_filesystems(b: Backend) {
    const N: usize = 6;
    const SIZE: usize = 8 << 20;
    let elsewhere = other_filesystem((N * SIZE) as u64);
    for kill_point in ["a first copy under way", "two backups promoted"] {
        let m = Mon::with_deposits_in(b, &many_jobs(N), Some(&elsewhere));
        let deposited = many_deposits(&m, N, SIZE);
        let pid = kill_scan_when(&m, &t(6, "02:30"), kill_point, || {
            let names = store_names(&m);
            if kill_point == "a first copy under way" {
                names
                    .iter()
                    .any(|(_, n)| n.starts_with('.') && n.contains(".tmp-"))
            } else {
                names
                    .iter()
                    .filter(|(db, n)| deposited.iter().any(|d| d.db == *db && d.file == *n))
                    .count()
                    >= 2
            }
        });
        let (leftovers, waiting) = check_after_kill(&m, &deposited, pid);
        assert!(
            waiting > 0,
            "killed at {kill_point}, yet every backup was promoted: the kill came too late"
        );
        finish_after_kill(&m, &deposited, &leftovers);
    }
}

/// Deposits on the store's filesystem: promotions are renames, over a hundred of them;
/// killed once the first is done, and once half are.
fn a_scan_killed_for_real_among_many_renames(b: Backend) {
    const N: usize = 120;
    for kill_at in [0, N / 2] {
        let m = Mon::new(b, &many_jobs(N));
        let deposited = many_deposits(&m, N, 4096);
        let d = &deposited[kill_at];
        let promoted = m.site("validated", CENTRE).join(&d.db).join(&d.file);
        let what = format!("backup {} promoted", kill_at + 1);
        let pid = kill_scan_when(&m, &t(6, "02:30"), &what, || promoted.exists());
        let (leftovers, waiting) = check_after_kill(&m, &deposited, pid);
        assert!(
            waiting > 0,
            "killed once {what}, yet every backup was promoted: the kill came too late"
        );
        finish_after_kill(&m, &deposited, &leftovers);
    }
}
