//! A site's agent against the PostgreSQL dev server: `backup --push` deposits what it just
//! backed up, is a configuration error before any backup without an `agent:` section, and
//! fails when the push fails, keeping the backup.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha_of(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The backups (with their manifests) in the backup directory, bookkeeping aside.
fn backups_in(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.') && n != "STATUS.json")
        .collect()
}

/// Sleeps into the next wall-clock second, so that the next backup gets a new file name.
fn next_second() {
    let now = chrono::Utc::now();
    let left = 1_000 - now.timestamp_subsec_millis().min(999) as u64;
    std::thread::sleep(Duration::from_millis(left + 20));
}

/// The config: the env's PostgreSQL target backed up into `backups/`, the agent's section
/// (`agent_extra` after its identity), and a monitor whose one job expects this database
/// once, five minutes ago.
fn configure(env: &Env, agent: Option<&str>) {
    let db = env.db().name();
    let d = |p: &str| env.dir.join(p).display().to_string();
    let due = (chrono::Utc::now() - chrono::Duration::minutes(5))
        .format("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    let agent = agent
        .map(|a| format!("agent:\n  company: ville\n  city: marseille\n  site: centre\n{a}"))
        .unwrap_or_default();
    env.write_global(&format!(
        "backup:\n  postgres:\n    dir: {}\n{agent}\
         monitor:\n  deposit_dir: {}\n  validated_dir: {}\n  history: sqlite:{}\n  jobs:\n\
         \x20   - {{id: centre-db, company: ville, city: marseille, site: centre, database: {db}, engine: postgres, frequency: once, at: \"{due}\"}}\n",
        d("backups"),
        d("deposits"),
        d("validated"),
        d("monitor.db"),
    ));
}

/// The agent's `deposit:`, a local directory of the test's.
fn local_deposit(env: &Env, name: &str) -> String {
    format!("  deposit: {}\n", env.dir.join(name).display())
}

fn site_dir(env: &Env) -> PathBuf {
    env.dir.join("deposits/ville/marseille/centre")
}

fn status_json(env: &Env) -> Value {
    serde_json::from_slice(&std::fs::read(site_dir(env).join("STATUS.json")).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// backup --push

#[test]
fn backup_push_deposits_what_it_just_backed_up() {
    let env = Env::pg_with_schema();
    configure(&env, Some(&local_deposit(&env, "deposits")));
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.success();
    let v = r.json();
    let file = v["backups"][0]["file"].as_str().unwrap().to_string();
    assert_eq!(v["push"]["status"], "success", "{v:#}");
    let pushed = &v["push"]["databases"][0];
    assert_eq!(
        (
            pushed["file"].as_str(),
            pushed["status"].as_str(),
            &pushed["deposited"]
        ),
        (Some(file.as_str()), Some("success"), &Value::Bool(true)),
        "{v:#}"
    );
    // The bytes just backed up, their manifest, and a report naming them.
    let db = env.db().name().to_string();
    let deposited = site_dir(&env).join(&db).join(&file);
    assert_eq!(
        sha_of(&deposited),
        sha_of(&env.dir.join("backups").join(&file))
    );
    assert!(site_dir(&env)
        .join(&db)
        .join(format!("{file}.json"))
        .exists());
    let status = status_json(&env);
    assert_eq!(status["databases"][0]["file"], file.as_str());
    assert_eq!(status["databases"][0]["sha256"], v["backups"][0]["sha256"]);
    // The table output says both.
    next_second();
    let r = env.run(&["backup", "--push"]);
    r.success()
        .stdout_has("Pushed to the central monitor")
        .stdout_has("STATUS.json of 1 database(s) written to");
    // The monitor validates what was pushed.
    let r = env.run(&["monitor", "scan", "--format", "json"]);
    r.success();
    assert_eq!(r.json()["judged"][0]["status"], "OK", "{}", r.stdout);
}

#[test]
fn backup_push_without_an_agent_section_is_refused_before_any_backup() {
    let env = Env::pg_with_schema();
    configure(&env, None);
    let r = env.run(&["backup", "--push"]);
    r.code(2)
        .stderr_has("--push")
        .stderr_has("no `agent:` section");
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.code(2);
    let v = r.json();
    assert_eq!(v["status"], "failed");
    assert!(v["error"].as_str().unwrap().contains("agent:"), "{v:#}");
    assert!(
        backups_in(&env.dir.join("backups")).is_empty(),
        "a backup was taken: {:?}",
        backups_in(&env.dir.join("backups"))
    );
    // --push makes no sense with --prune-only.
    env.run(&["backup", "--prune-only", "--push"]).code(2);
}

#[test]
fn a_failed_push_fails_backup_push_and_keeps_the_backup() {
    let env = Env::pg_with_schema();
    let db = env.db().name().to_string();
    configure(&env, Some(&local_deposit(&env, "deposits")));
    // The database's deposit directory is a file: its backup cannot be deposited; the
    // report can, and says so.
    std::fs::create_dir_all(site_dir(&env)).unwrap();
    std::fs::write(site_dir(&env).join(&db), "in the way").unwrap();
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.code(1)
        .stderr_has("could not be deposited")
        .stderr_has("the backups themselves are kept");
    let v = r.json();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["backups"][0]["status"], "success", "{v:#}");
    assert_eq!(v["push"]["status"], "failed", "{v:#}");
    assert_eq!(v["push"]["databases"][0]["deposited"], false);
    let file = v["backups"][0]["file"].as_str().unwrap().to_string();
    let status = status_json(&env);
    assert_eq!(status["databases"][0]["status"], "failed");
    assert!(status["databases"][0]["error"]
        .as_str()
        .unwrap()
        .contains("not deposited"));
    // The deposit itself is a file: nothing can be pushed, not even the report.
    next_second();
    configure(&env, Some(&local_deposit(&env, "blocked")));
    std::fs::write(env.dir.join("blocked"), "not a directory").unwrap();
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.code(1)
        .stderr_has("the push to the central monitor failed")
        .stderr_has("the backups themselves are kept");
    let v = r.json();
    assert_eq!(v["push"]["status"], "failed", "{v:#}");
    assert!(
        v["push"]["error"].as_str().unwrap().contains("blocked"),
        "{v:#}"
    );
    let second = v["backups"][0]["file"].as_str().unwrap().to_string();
    assert_ne!(file, second);
    // Both backups are there, whole: verify reads them through.
    let kept = backups_in(&env.dir.join("backups"));
    for f in [&file, &second] {
        assert!(kept.contains(f), "{f} not kept: {kept:?}");
        assert!(
            kept.contains(&format!("{f}.json")),
            "{f}'s manifest not kept"
        );
    }
    env.run(&["backup", "verify", "--all"]).success();
}
