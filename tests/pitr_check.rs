//! `pitr check`, the `wal_archiving` and `wal_ready_files` health checks and the exporter's
//! `pitr` families, against real throwaway PostgreSQL 15 clusters archiving with this build's
//! `wal push` (the shared harness of `tests/pitr.rs`): a healthy archive, an archive the
//! server cannot write, a segment deleted from the archive, a server that does not archive.

#[path = "common/pitr_cluster.rs"]
mod cluster;

use cluster::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

/// `pitr check --format json`: its exit code and document.
fn check_json(c: &Cluster) -> (Option<i32>, Value, Output) {
    let out = run(c, &["--format", "json", "pitr", "check"]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    (out.status.code(), doc, out)
}

/// The line `name` of the first target's checks.
fn line<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["targets"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc:#}"))
}

/// The segment before `name` (the tests stay far from a log boundary).
fn previous(name: &str) -> String {
    let seg = u32::from_str_radix(&name[16..], 16).unwrap();
    format!("{}{:08X}", &name[..16], seg - 1)
}

/// Makes the archive unwritable for the server and waits until `archive_command` has failed
/// on `n` new segments' first; returns the last segment switched away from.
fn failing_archive(c: &Cluster, n: usize) -> String {
    std::fs::set_permissions(c.ws.archive(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let wal = c.switch(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let failed: i64 = c
            .psql("SELECT failed_count FROM pg_stat_archiver")
            .parse()
            .unwrap();
        if failed > 0 {
            return wal;
        }
        assert!(Instant::now() < deadline, "archive_command never failed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `.ready` files in the server's `pg_wal/archive_status`.
fn ready_on_disk(c: &Cluster) -> usize {
    std::fs::read_dir(c.data.join("pg_wal/archive_status"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
        .count()
}

/// The value of the sample of `family` whose labels include every `k="v"` of `labels`.
fn sample(exposition: &str, family: &str, labels: &[&str]) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(family)?;
        let (labels_part, value) = rest.strip_prefix('{')?.split_once("} ")?;
        labels
            .iter()
            .all(|want| labels_part.split(',').any(|have| have == *want))
            .then(|| value.trim().parse().ok())?
    })
}

#[test]
fn a_healthy_archive_is_ok_on_every_line_and_a_role_without_pg_monitor_is_unknown() {
    let c = Cluster::new("check-ok", true);
    let last = c.switch(3);
    c.wait_archived(&last);

    let (code, doc, out) = check_json(&c);
    assert_eq!(code, Some(0), "{}", text(&out));
    assert_eq!(doc["status"], "ok", "{doc:#}");
    let t = &doc["targets"][0];
    assert_eq!(t["target"], "pg");
    assert_eq!(t["status"], "ok");
    let names: Vec<&str> = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "ok", "{c:#}");
            assert!(!c["message"].as_str().unwrap().is_empty(), "{c:#}");
            c["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "archiving",
            "failures",
            "last_archived",
            "ready_files",
            "archive"
        ]
    );
    let age = line(&doc, "last_archived");
    assert_eq!(age["unit"], "s");
    assert_eq!(age["warning"], 900.0);
    assert_eq!(age["critical"], 3600.0);
    assert!(age["value"].as_f64().unwrap() >= 0.0, "{age:#}");
    assert!(
        age["message"].as_str().unwrap().starts_with(&last),
        "{age:#}"
    );
    assert_eq!(line(&doc, "ready_files")["value"], 0.0);
    // One plugin line, with perfdata, for a Nagios-style scheduler.
    let out = run(&c, &["--format", "nagios", "pitr", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("MAIRIE-DBA OK - pitr: ") && stdout.contains("pg_ready_files"),
        "{stdout}"
    );
    // A bad option of a check is UNKNOWN (3), not a usage error of an operation (2).
    let out = run(&c, &["pitr", "check", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(line(&doc, "failures")["value"], 0.0);
    let archive = line(&doc, "archive");
    assert_eq!(archive["value"], 0.0);
    assert!(
        archive["message"]
            .as_str()
            .unwrap()
            .contains(&c.ws.archive().display().to_string()),
        "{archive:#}"
    );
    let a = &t["archiver"];
    assert_eq!(a["last_archived_wal"], last.as_str(), "{a:#}");
    assert_eq!(a["failed_count"], 0);
    assert_eq!(a["ready_files"], 0);
    assert_eq!(a["missing_in_archive"], serde_json::json!([]));
    let checked: Vec<&str> = a["checked_in_archive"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(checked.last(), Some(&last.as_str()), "{a:#}");
    assert!(checked.contains(&previous(&last).as_str()), "{a:#}");
    assert!(a["archived_count"].as_i64().unwrap() >= 3, "{a:#}");

    // The terminal: a table, then the summary line.
    let out = run(&c, &["pitr", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("last_archived") && stdout.contains(&last),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("PITR CHECK OK - 1 target(s), WAL archiving OK\n"),
        "{stdout}"
    );

    // A role outside pg_monitor may not count the .ready files: UNKNOWN naming the grant,
    // never OK.
    c.psql("CREATE ROLE plain LOGIN");
    let engine_file = c.ws.dir.join("config_pg.yml");
    let as_postgres = std::fs::read_to_string(&engine_file).unwrap();
    std::fs::write(
        &engine_file,
        as_postgres.replace("user: postgres", "user: plain"),
    )
    .unwrap();
    let (code, doc, out) = check_json(&c);
    assert_eq!(code, Some(3), "{}", text(&out));
    assert_eq!(doc["status"], "unknown", "{doc:#}");
    let ready = line(&doc, "ready_files");
    assert_eq!(ready["status"], "unknown", "{ready:#}");
    assert_eq!(ready["value"], Value::Null);
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("GRANT pg_monitor TO \"plain\""),
        "{ready:#}"
    );
    // What the role does see is still judged.
    assert_eq!(line(&doc, "archive")["status"], "ok", "{doc:#}");
    assert_eq!(line(&doc, "last_archived")["status"], "ok", "{doc:#}");
}

#[test]
fn an_unwritable_archive_is_critical_naming_the_failure_and_counting_the_backlog() {
    let c = Cluster::new("check-unwritable", true);
    let wal = failing_archive(&c, 2);
    let (code, doc, out) = check_json(&c);
    assert_eq!(code, Some(2), "{}", text(&out));
    assert_eq!(doc["status"], "critical");
    let failed_wal = c.psql("SELECT last_failed_wal FROM pg_stat_archiver");
    let failures = line(&doc, "failures");
    assert_eq!(failures["status"], "critical", "{failures:#}");
    let m = failures["message"].as_str().unwrap();
    assert!(
        m.starts_with("archive_command fails: the last attempt, on ")
            && m.contains(&failed_wal)
            && m.contains("`wal push:`"),
        "{m}"
    );
    assert!(failures["value"].as_f64().unwrap() >= 1.0, "{failures:#}");
    // The backlog: the segments the server keeps, as many as pg_wal/archive_status holds.
    let ready = line(&doc, "ready_files");
    let on_disk = ready_on_disk(&c);
    assert!(on_disk >= 2, "{on_disk} .ready files");
    assert_eq!(ready["value"], on_disk as f64, "{ready:#}");
    assert_eq!(doc["targets"][0]["archiver"]["ready_files"], on_disk);
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{on_disk} WAL file(s) wait to be archived")),
        "{ready:#}"
    );
    assert_eq!(line(&doc, "archiving")["status"], "ok");
    // Nothing reached the archive: nothing there to miss.
    assert_eq!(line(&doc, "archive")["status"], "ok");
    assert!(c.ws.archived().is_empty());

    // The summary line names the failure and the backlog.
    let out = run(&c, &["pitr", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        summary.starts_with("PITR CHECK CRITICAL - pg: failures archive_command fails")
            && summary.contains(&failed_wal),
        "{summary}"
    );

    // Writable again: the backlog goes through and the check is OK.
    std::fs::set_permissions(c.ws.archive(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let newer = c.switch(1);
    assert!(newer > wal);
    c.wait_archived(&newer);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, doc, out) = check_json(&c);
        if code == Some(0) {
            assert_eq!(line(&doc, "failures")["status"], "ok", "{doc:#}");
            break;
        }
        assert!(Instant::now() < deadline, "never OK again: {}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_segment_deleted_from_the_archive_is_critical_and_named() {
    let c = Cluster::new("check-deleted", true);
    let last = c.switch(4);
    c.wait_archived(&last);
    let prev = previous(&last);
    std::fs::remove_file(c.ws.path_of(&prev)).unwrap();

    let (code, doc, out) = check_json(&c);
    assert_eq!(code, Some(2), "{}", text(&out));
    let archive = line(&doc, "archive");
    assert_eq!(archive["status"], "critical", "{archive:#}");
    assert_eq!(archive["value"], 1.0);
    let dir = c.ws.archive().display().to_string();
    assert_eq!(
        archive["message"],
        format!(
            "{prev} missing from the archive {dir}, though pg_stat_archiver says {last} was archived"
        )
    );
    assert_eq!(
        doc["targets"][0]["archiver"]["missing_in_archive"],
        serde_json::json!([prev])
    );
    // The server itself sees nothing wrong.
    for name in ["archiving", "failures", "last_archived", "ready_files"] {
        assert_eq!(line(&doc, name)["status"], "ok", "{doc:#}");
    }

    // The last one gone too.
    std::fs::remove_file(c.ws.path_of(&last)).unwrap();
    let (code, doc, _) = check_json(&c);
    assert_eq!(code, Some(2));
    assert_eq!(
        doc["targets"][0]["archiver"]["missing_in_archive"],
        serde_json::json!([prev, last])
    );
    assert_eq!(line(&doc, "archive")["value"], 2.0);

    // The archive directory itself gone: CRITICAL, naming it.
    std::fs::remove_dir_all(c.ws.archive()).unwrap();
    let (code, doc, _) = check_json(&c);
    assert_eq!(code, Some(2));
    let archive = line(&doc, "archive");
    assert_eq!(archive["status"], "critical");
    assert!(
        archive["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("the archive directory {dir} does not exist")),
        "{archive:#}"
    );
}

#[test]
fn a_server_that_does_not_archive_is_critical() {
    let c = Cluster::new("check-off", false);
    let (code, doc, out) = check_json(&c);
    assert_eq!(code, Some(2), "{}", text(&out));
    assert_eq!(doc["status"], "critical");
    let archiving = line(&doc, "archiving");
    assert_eq!(archiving["status"], "critical");
    assert_eq!(
        archiving["message"],
        "archive_mode is off: no WAL is archived"
    );
    let age = line(&doc, "last_archived");
    assert_eq!(age["status"], "critical");
    assert!(
        age["message"]
            .as_str()
            .unwrap()
            .starts_with("not archiving: nothing archived"),
        "{age:#}"
    );
    let out = run(&c, &["pitr", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("PITR CHECK CRITICAL - pg: archiving archive_mode is off"),
        "{}",
        text(&out)
    );
}

#[test]
fn health_and_the_exporter_report_the_same_judgement() {
    let c = Cluster::new("check-health", true);
    // A second target on the same server, without a `pitr:` section.
    let config = std::fs::read_to_string(c.ws.config()).unwrap();
    std::fs::write(
        c.ws.config(),
        config.replacen(
            "pitr:\n",
            "  nopitr:\n    engine: postgres\n    config: config_pg.yml\npitr:\n",
            1,
        ),
    )
    .unwrap();
    failing_archive(&c, 2);
    let on_disk = ready_on_disk(&c);

    // health: both checks for the target with an archive; not listed for the other.
    let out = run(&c, &["--format", "json", "health"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let target = |name: &str| -> Value {
        doc["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == name)
            .unwrap_or_else(|| panic!("no {name}: {doc:#}"))
            .clone()
    };
    let pg = target("pg");
    let check = |name: &str| -> Value {
        pg["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {pg:#}"))
            .clone()
    };
    let archiving = check("wal_archiving");
    assert_eq!(archiving["status"], "critical", "{archiving:#}");
    // Nothing archived yet: no age to give.
    assert_eq!(archiving["value"], Value::Null, "{archiving:#}");
    assert_eq!(archiving["warning"], 900.0);
    assert!(
        archiving["message"]
            .as_str()
            .unwrap()
            .contains("archive_command fails"),
        "{archiving:#}"
    );
    let ready = check("wal_ready_files");
    assert_eq!(ready["value"], on_disk as f64, "{ready:#}");
    assert_eq!(ready["warning"], 10.0);
    assert_eq!(ready["critical"], 100.0);
    let nopitr = target("nopitr");
    let listed = |t: &Value, key: &str| -> Vec<String> {
        t[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    for key in ["checks", "skipped"] {
        let names = listed(&nopitr, key);
        assert!(
            !names.iter().any(|n| n.starts_with("wal_")),
            "{key}: {names:?}"
        );
    }

    // Named, with thresholds from the command line: judged by them; and UNKNOWN where
    // there is no archive.
    let out = run(
        &c,
        &[
            "--format",
            "json",
            "health",
            "--check",
            "wal_ready_files",
            "--warning",
            &format!("wal_ready_files={on_disk}"),
            "--critical",
            "wal_ready_files=1000",
        ],
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let pg = &doc["targets"][0];
    assert_eq!(pg["target"], "pg");
    assert_eq!(pg["checks"][0]["status"], "warning", "{doc:#}");
    assert_eq!(pg["checks"][0]["warning"], on_disk as f64);
    let other = &doc["targets"][1];
    assert_eq!(other["checks"][0]["status"], "unknown", "{doc:#}");
    assert_eq!(
        other["checks"][0]["message"],
        "does not apply: no `pitr:` section for this target"
    );

    // The exporter: the same facts, and the status pitr check finds.
    let out = run(&c, &["metrics", "collect"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let m = String::from_utf8_lossy(&out.stdout).to_string();
    let pg = "target=\"pg\"";
    assert_eq!(
        sample(&m, "mairie_dba_archiver_failing", &[pg]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "mairie_dba_archiver_ready_files", &[pg]),
        Some(on_disk as f64),
        "{m}"
    );
    assert_eq!(
        sample(&m, "mairie_dba_pitr_archive_missing_segments", &[pg]),
        Some(0.0),
        "{m}"
    );
    for (state, v) in [
        ("OK", 0.0),
        ("WARNING", 0.0),
        ("CRITICAL", 1.0),
        ("UNKNOWN", 0.0),
    ] {
        let state = format!("state=\"{state}\"");
        assert_eq!(
            sample(&m, "mairie_dba_pitr_status", &[pg, &state]),
            Some(v),
            "{state}: {m}"
        );
    }
    assert_eq!(
        sample(&m, "mairie_dba_scrape_error", &[pg, "family=\"pitr\""]),
        Some(0.0),
        "{m}"
    );
    // The target without an archive has no pitr families, and no pitr group to fail.
    assert!(
        !m.lines()
            .any(|l| l.starts_with("mairie_dba_pitr_") && l.contains("target=\"nopitr\"")),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "mairie_dba_scrape_error",
            &["target=\"nopitr\"", "family=\"pitr\""]
        ),
        None
    );
    assert_eq!(
        sample(
            &m,
            "mairie_dba_archiver_ready_files",
            &["target=\"nopitr\""]
        ),
        Some(on_disk as f64),
        "the backlog is the server's: {m}"
    );
}
