//! `erase` against real PostgreSQL and MariaDB servers with the demo data: every row linked
//! to the subject is deleted or pseudonymised and nothing else changes, `--dry-run` changes
//! nothing, the record holds no personal value, the subject's hash is stable, and the
//! backups that still hold the subject are listed.

mod common;

use common::*;
use serde_json::Value;

per_engine!(
    erase_removes_or_pseudonymises_every_linked_row_and_nothing_else,
    dry_run_changes_nothing_and_needs_no_key,
    the_hash_is_stable_per_key_and_the_key_never_shows,
    no_match_and_several_matches_are_refused,
);

const KEY: &str = "une-cle-de-test-assez-longue-0123";

/// The demo data loaded, with the mairie model's erasure policy and rules for the personal
/// columns, the hashing key set, and a backup section in the test's own directory.
fn env_with_data(engine: Engine) -> Env {
    let mut env = Env::new(engine);
    let e = engine.name();
    env.write_global(&format!(
        "backup:\n  {e}:\n    dir: {}\n    retention_days: 14\n    keep_min: 1\n\
         privacy:\n  rules:\n    metier.citoyens.nom: fake\n    metier.citoyens.prenom: fake\n    \
         metier.citoyens.email: email\n    metier.citoyens.telephone: generalize\n    \
         metier.citoyens.adresse: fake\n    metier.citoyens.date_naissance: generalize\n    \
         metier.demandes.commentaire: null\n\
         erasure:\n  subject: metier.citoyens\n  tables:\n    metier.demandes: pseudonymize\n    \
         metier.rendez_vous: delete\n",
        env.path("backups").display()
    ));
    env.set_env("MAIRIE_PRIVACY_KEY", KEY);
    env.run(&["schema", "apply"]).success();
    env.run(&["load-csv", "--all"]).success();
    env
}

const TABLES: [&str; 4] = [
    "metier.citoyens",
    "metier.demandes",
    "metier.rendez_vous",
    "metier.journal_audit",
];

fn counts(db: &Db) -> Vec<i64> {
    TABLES.iter().map(|t| db.count(t)).collect()
}

/// A citizen with demandes and rendez-vous (some linked to a demande).
fn busy_citizen(db: &Db) -> String {
    db.scalar(
        "SELECT d.citoyen_id FROM metier.demandes d JOIN metier.rendez_vous r ON r.demande_id = d.id \
         GROUP BY d.citoyen_id ORDER BY count(*) DESC, d.citoyen_id LIMIT 1",
    )
    .unwrap()
}

fn erase_removes_or_pseudonymises_every_linked_row_and_nothing_else(engine: Engine) {
    let env = env_with_data(engine);
    let db = env.db();
    let id = busy_citizen(db);
    // A demande's history in the journal: an update the trigger records.
    db.query(&format!(
        "UPDATE metier.demandes SET commentaire = 'appel du demandeur' WHERE citoyen_id = {id}"
    ));
    let personal = db.query(&format!(
        "SELECT nom, email, telephone FROM metier.citoyens WHERE id = {id}"
    ))[0]
        .clone();
    let demandes: Vec<String> = db
        .query(&format!(
            "SELECT id FROM metier.demandes WHERE citoyen_id = {id}"
        ))
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    let n_dem = demandes.len() as i64;
    let n_rdv = db.count_where("metier.rendez_vous", &format!("citoyen_id = {id}"));
    let dem_list = demandes.join(", ");
    let rdvs: Vec<String> = db
        .query(&format!(
            "SELECT id FROM metier.rendez_vous WHERE citoyen_id = {id}"
        ))
        .into_iter()
        .map(|r| format!("'{}'", r[0].clone().unwrap()))
        .collect();
    let quoted_dem = demandes
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ");
    // CONCAT: the harness maps `metier.` to `metier_` in SQL text, literals included.
    let about_dem =
        format!("table_cible = CONCAT('metier', '.demandes') AND cle IN ({quoted_dem})");
    let n_journal = db.count_where(
        "metier.journal_audit",
        &format!(
            "({about_dem}) OR (table_cible = CONCAT('metier', '.rendez_vous') AND cle IN ({}))",
            rdvs.join(", ")
        ),
    );
    assert!(n_dem > 0 && n_rdv > 0 && n_journal > 0);
    let other_rdv = db.count_where("metier.rendez_vous", &format!("citoyen_id <> {id}"));
    let other_dem_comment = db.scalar(&format!(
        "SELECT count(*) FROM metier.demandes WHERE citoyen_id <> {id} AND commentaire IS NOT NULL"
    ));
    // A backup taken before the erasure holds the subject.
    env.run(&["backup"]).success();
    let before = counts(db);

    let out = env.run(&[
        "--format",
        "json",
        "erase",
        "--table",
        "metier.citoyens",
        "--where",
        &format!("id={id}"),
    ]);
    out.success();
    let doc = out.json();
    let t = &doc["targets"][0];
    assert_eq!(t["subjects"], 1, "{}", out.stdout);
    let after = counts(db);
    // The subject goes, a placeholder citizen comes: the count is the same.
    assert_eq!(after[0], before[0], "citoyens: {}", out.stdout);
    assert_eq!(db.count_where("metier.citoyens", &format!("id = {id}")), 0);
    assert_eq!(after[1], before[1], "demandes are kept");
    assert_eq!(after[2], before[2] - n_rdv, "rendez_vous deleted");
    assert!(
        after[3] <= before[3] - n_journal,
        "journal rows about them deleted"
    );
    // Kept demandes point at the placeholder and lost their comment.
    let ph = db
        .scalar("SELECT key_text FROM mairie_dba_erasure_placeholder")
        .unwrap();
    assert_eq!(
        db.count_where(
            "metier.demandes",
            &format!("id IN ({dem_list}) AND citoyen_id = {ph} AND commentaire IS NULL")
        ),
        n_dem
    );
    assert_eq!(
        db.count_where("metier.journal_audit", &about_dem),
        0,
        "no journal row about the kept demandes, not even those of the erasure itself"
    );
    // Other citizens untouched.
    assert_eq!(
        db.count_where("metier.rendez_vous", &format!("citoyen_id <> {id}")),
        other_rdv
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM metier.demandes WHERE citoyen_id <> {ph} AND commentaire IS NOT NULL"
        )),
        other_dem_comment
    );
    // The record: in the table and the report, with no personal value.
    let record = db.query("SELECT * FROM mairie_dba_erasure_log");
    assert_eq!(record.len(), 1);
    let record_text = format!("{record:?}{}", t["record"]);
    for v in personal.iter().flatten() {
        assert!(!record_text.contains(v.as_str()), "{v} in {record_text}");
        assert!(!out.stdout.contains(v.as_str()), "{v} in {}", out.stdout);
    }
    assert_eq!(t["record"]["subject_hash"].as_str().unwrap().len(), 64);
    assert!(!out.stdout.contains(KEY));
    // The backup taken before still holds the subject, and retention's date is given.
    let backups = t["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{}", out.stdout);
    assert!(backups[0]["removed_after"].as_str().is_some());

    // A second erasure reuses the placeholder.
    let id2 = busy_citizen(db);
    env.run(&[
        "erase",
        "--table",
        "metier.citoyens",
        "--where",
        &format!("id={id2}"),
    ])
    .success()
    .stdout_has("metier.demandes");
    assert_eq!(
        db.count("mairie_dba_erasure_placeholder"),
        1,
        "one placeholder per subject table"
    );
    assert_eq!(db.count_where("metier.citoyens", &format!("id = {id2}")), 0);
}

fn dry_run_changes_nothing_and_needs_no_key(engine: Engine) {
    let mut env = env_with_data(engine);
    env.remove_env("MAIRIE_PRIVACY_KEY");
    let db = env.db();
    let id = busy_citizen(db);
    let before = counts(db);
    let out = env.run(&[
        "erase",
        "--table",
        "metier.citoyens",
        "--where",
        &format!("id={id}"),
        "--dry-run",
    ]);
    out.success()
        .stdout_has("metier.rendez_vous")
        .stdout_has("pseudonymize")
        .stdout_has("would be created");
    assert_eq!(counts(db), before);
    assert!(!db.exists("mairie_dba_erasure_log"));
    // A real run needs the key: a configuration error naming the variable.
    env.run(&[
        "erase",
        "--table",
        "metier.citoyens",
        "--where",
        &format!("id={id}"),
    ])
    .code(2)
    .stderr_has("MAIRIE_PRIVACY_KEY");
    assert_eq!(counts(db), before);
}

fn record_hash(env: &Env, by: &str) -> String {
    let out = env.run(&[
        "--format",
        "json",
        "erase",
        "--table",
        "metier.citoyens",
        "--where",
        by,
        "--dry-run",
    ]);
    out.success();
    let doc: Value = out.json();
    assert!(!out.stdout.contains(KEY));
    doc["targets"][0]["subject_hash"]
        .as_str()
        .unwrap()
        .to_string()
}

fn the_hash_is_stable_per_key_and_the_key_never_shows(engine: Engine) {
    let mut env = env_with_data(engine);
    let row = env
        .db()
        .query("SELECT email, id FROM metier.citoyens WHERE email IS NOT NULL ORDER BY id LIMIT 1");
    let (email, id) = (row[0][0].clone().unwrap(), row[0][1].clone().unwrap());
    let by = format!("email={email}");
    let a = record_hash(&env, &by);
    assert_eq!(a, record_hash(&env, &by));
    assert_ne!(
        a,
        record_hash(&env, &format!("id={id}")),
        "another key column, another subject text"
    );
    env.set_env("MAIRIE_PRIVACY_KEY", "une-autre-cle-tout-aussi-longue-99");
    assert_ne!(a, record_hash(&env, &by));
}

fn no_match_and_several_matches_are_refused(engine: Engine) {
    let env = env_with_data(engine);
    let db = env.db();
    let before = counts(db);
    env.run(&[
        "erase",
        "--table",
        "metier.citoyens",
        "--where",
        "email=personne@nulle.part",
    ])
    .code(1)
    .stderr_has("no row of metier.citoyens matches")
    .lacks("personne@nulle.part");
    let civ = "civilite=Mme";
    env.run(&["erase", "--table", "metier.citoyens", "--where", civ])
        .code(1)
        .stderr_has("--all-matching");
    env.run(&[
        "erase",
        "--table",
        "metier.citoyens",
        "--where",
        "pas_une_colonne=1",
    ])
    .code(1)
    .stderr_has("has no column `pas_une_colonne`");
    assert_eq!(counts(db), before);
}
