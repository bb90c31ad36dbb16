//! The backup directory as an attacker (or bad luck) leaves it: a manifest that points
//! elsewhere or claims another database, a symbolic link planted for the lock or as a backup,
//! a database name that is a path, files lost under retention, leftovers of killed runs.
//! Each test makes the fault, then checks what is left.

mod common;

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::Value;

use common::*;

per_engine!(
    a_manifest_is_data_not_instructions,
    a_planted_symlink_is_never_written_or_read_through,
    retention_counts_only_backups_whose_file_is_there,
    leftovers_of_killed_runs_are_removed_and_reported,
);

fn backup_dir(env: &Env) -> PathBuf {
    env.path("backups")
}

fn configure(env: &Env, keep_min: u32) {
    env.write_global(&format!(
        "backup:\n  {}:\n    dir: {}\n    retention_days: 1\n    keep_min: {keep_min}\n",
        env.engine.name(),
        backup_dir(env).display()
    ));
}

/// A backup; two in the same second would share a name, so this one waits out the second.
fn take(env: &Env) -> PathBuf {
    std::thread::sleep(std::time::Duration::from_millis(1050));
    let out = env.run(&["--format", "json", "backup"]);
    out.success();
    backup_dir(env).join(out.json()["backups"][0]["file"].as_str().unwrap())
}

fn manifest_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

fn edit_manifest(p: &Path, f: impl FnOnce(&mut Value)) {
    let mp = manifest_of(p);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&mp, v.to_string()).unwrap();
}

fn a_manifest_is_data_not_instructions(engine: Engine) {
    let env = Env::with_schema(engine);
    configure(&env, 3);
    let good = take(&env);
    // A copy of the backup outside the directory, and the manifest pointed at it.
    let outside = env.path("outside.bin");
    std::fs::copy(&good, &outside).unwrap();
    edit_manifest(&good, |m| {
        m["location"] = Value::String(outside.display().to_string());
    });
    std::fs::write(&good, b"not the backup any more").unwrap();
    let check = env.run(&["--format", "json", "backup", "check"]);
    assert_ne!(check.code, 0, "backup check said intact: {}", check.stdout);
    check.stdout_has("names a location");
    let restore = env.run(&["restore", "--latest", "--into", "never_restored"]);
    restore.code(1).one_line_error();
    assert!(!database_exists(engine, "never_restored"));
    env.run(&["backup", "verify", "--latest"]).code(1);

    // A manifest that claims another database never decides where a restore goes: the
    // backup is foreign and skipped.
    let second = take(&env);
    edit_manifest(&second, |m| {
        m["database"] = Value::String("autre_base".into());
    });
    let list = env.run(&["--format", "json", "backup", "list"]);
    list.success();
    let j = list.json();
    let listed = j["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["file"] == second.file_name().unwrap().to_str().unwrap())
        .unwrap()
        .clone();
    assert_eq!(listed["status"], "foreign (skipped)", "{listed}");
    env.run(&["restore", "--latest"]).code(1);
    assert!(!database_exists(engine, "autre_base"));
}

fn database_exists(engine: Engine, db: &str) -> bool {
    let rows = match engine {
        Engine::Postgres => pg_query(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        ),
        Engine::Mysql => my_query(
            None,
            &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"),
        ),
    };
    rows[0][0].as_deref() == Some("1")
}

fn a_planted_symlink_is_never_written_or_read_through(engine: Engine) {
    let env = Env::with_schema(engine);
    configure(&env, 3);
    std::fs::create_dir_all(backup_dir(&env)).unwrap();
    let victim = env.write("victim.txt", "precious\n");
    let lock = backup_dir(&env).join(format!(".{}.lock", engine.name()));
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    env.run(&["backup"])
        .code(1)
        .one_line_error()
        .stderr_has("is a symbolic link: refusing to write through it");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(&lock).unwrap();

    // A backup "file" that is a link to a file elsewhere, with a manifest that matches it:
    // listed as foreign, never read by verify, never deleted by retention.
    let good = take(&env);
    let db = env.db().name().to_string();
    let ext = good
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .split_once('.')
        .unwrap()
        .1
        .to_string();
    let old = Utc::now() - chrono::Duration::days(30);
    let link = backup_dir(&env).join(format!("{db}_full_{}.{ext}", old.format("%Y%m%d_%H%M%S")));
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(manifest_of(&good)).unwrap()).unwrap();
    m["file"] = Value::String(link.file_name().unwrap().to_str().unwrap().into());
    m["size_bytes"] = 9.into();
    std::fs::write(manifest_of(&link), m.to_string()).unwrap();
    let list = env.run(&["--format", "json", "backup", "list"]);
    list.success();
    assert!(list.stdout.contains("foreign (skipped)"), "{}", list.stdout);
    env.run(&["backup", "verify", "--all"])
        .stderr_has("symbolic link");
    env.run(&["backup", "--prune-only"]).success();
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "the link was deleted"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

fn retention_counts_only_backups_whose_file_is_there(engine: Engine) {
    let env = Env::with_schema(engine);
    configure(&env, 3);
    // Three backups, all older than the retention period, then two of their files lost
    // (their manifests left).
    let mut files = Vec::new();
    for _ in 0..3 {
        files.push(take(&env));
    }
    let db = env.db().name().to_string();
    let mut aged = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_str().unwrap();
        let ext = name.split_once('.').unwrap().1;
        let when = Utc::now() - chrono::Duration::days(10 + i as i64);
        let new =
            backup_dir(&env).join(format!("{db}_full_{}.{ext}", when.format("%Y%m%d_%H%M%S")));
        let mut m: Value =
            serde_json::from_str(&std::fs::read_to_string(manifest_of(f)).unwrap()).unwrap();
        m["file"] = Value::String(new.file_name().unwrap().to_str().unwrap().into());
        std::fs::rename(f, &new).unwrap();
        std::fs::remove_file(manifest_of(f)).unwrap();
        std::fs::write(manifest_of(&new), m.to_string()).unwrap();
        aged.push(new);
    }
    // The two newest files are lost; the oldest is the only intact one.
    std::fs::remove_file(&aged[0]).unwrap();
    std::fs::remove_file(&aged[1]).unwrap();
    let out = env.run(&["--format", "json", "backup", "--prune-only"]);
    out.success();
    assert!(
        aged[2].exists(),
        "the only intact backup was deleted: {}",
        out.stdout
    );
    let list = env.run(&["--format", "json", "backup", "list"]);
    let lost: Vec<String> = list.json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "damaged (file missing)")
        .map(|b| b["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lost.len(), 2, "{}", list.stdout);
}

fn leftovers_of_killed_runs_are_removed_and_reported(engine: Engine) {
    let env = Env::with_schema(engine);
    configure(&env, 3);
    let first = take(&env);
    let name = first.file_name().unwrap().to_str().unwrap().to_string();
    // A manifest's temporary file from a process that is gone.
    let tmp = backup_dir(&env).join(format!(".{name}.json.tmp4000000"));
    std::fs::write(&tmp, "{").unwrap();
    // A complete backup file whose manifest was never renamed into place.
    let db = env.db().name().to_string();
    let ext = name.split_once('.').unwrap().1;
    let when = Utc::now() - chrono::Duration::hours(2);
    let orphan = backup_dir(&env).join(format!("{db}_full_{}.{ext}", when.format("%Y%m%d_%H%M%S")));
    std::fs::copy(&first, &orphan).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1050));
    let out = env.run(&["backup"]);
    out.success().stderr_has(&format!(
        "{}, left by a backup killed before it finished",
        orphan.display()
    ));
    assert!(!orphan.exists() && !tmp.exists());
    assert!(
        first.exists() && manifest_of(&first).exists(),
        "a finished backup went"
    );
}

#[test]
fn a_database_name_that_is_a_path_stays_in_the_backup_directory() {
    let env = Env::with_schema(Engine::Postgres);
    let name = "../escape/x";
    pg_query("postgres", &format!("CREATE DATABASE \"{name}\""));
    struct Drop1(&'static str);
    impl Drop for Drop1 {
        fn drop(&mut self) {
            drop_pg_database(self.0);
        }
    }
    let _d = Drop1("../escape/x");
    env.write_engine_config(name, "");
    configure(&env, 3);
    let f = take(&env);
    assert_eq!(f.parent().unwrap(), backup_dir(&env), "{}", f.display());
    let file = f.file_name().unwrap().to_str().unwrap();
    assert!(file.starts_with("%2E.%2Fescape%2Fx_full_"), "{file}");
    assert!(
        !env.path("escape").exists(),
        "written outside the backup directory"
    );
    env.run(&["backup", "check"]).success();
    // And it restores (into another database).
    let into = format!("{}_r", env.db().name());
    struct Drop2(String);
    impl Drop for Drop2 {
        fn drop(&mut self) {
            drop_pg_database(&self.0);
        }
    }
    let _r = Drop2(into.clone());
    env.run(&["restore", "--latest", "--into", &into]).success();
}

#[test]
fn force_is_announced_before_it_starts_and_said_in_json() {
    let env = Env::with_schema(Engine::Postgres);
    configure(&env, 3);
    take(&env);
    let into = format!("{}_f", env.db().name());
    struct D(String);
    impl Drop for D {
        fn drop(&mut self) {
            drop_pg_database(&self.0);
        }
    }
    let _d = D(into.clone());
    env.run(&["restore", "--latest", "--into", &into]).success();
    let out = env.run(&[
        "--format", "json", "restore", "--latest", "--into", &into, "--force",
    ]);
    out.success().stderr_has(&format!(
        "--force: the tables of database {into} are dropped and replaced"
    ));
    assert_eq!(out.json()["restores"][0]["force"], true, "{}", out.stdout);
}
