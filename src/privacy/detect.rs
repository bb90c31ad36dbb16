//! Columns that look personal but have no rule: by their name (nom, email, telephone,
//! naissance, adresse, iban, nir …) or by a sample of their values (e-mail addresses, French
//! phone numbers, IBANs and social security numbers that pass their check digits).
//!
//! `anonymize` refuses to copy such a column unless told to (`--allow-unruled`); `privacy
//! report` lists them through [`suspected_columns`].

use anyhow::Result;

use crate::engine::{Conn, Driver};
use crate::privacy::plan::{PrivacyColumn, TypeCategory};
use crate::privacy::{ColumnRef, PrivacySection};

/// Values sampled per column.
pub const SAMPLE_ROWS: u32 = 200;
/// The table the pseudonymised copies carry, which is never suspected.
pub const MARKER_TABLE: &str = "mairie_dba_anonymized";

/// A column that looks personal and has no rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Suspect {
    #[serde(serialize_with = "as_text")]
    pub column: ColumnRef,
    pub reason: String,
}

fn as_text<S: serde::Serializer>(c: &ColumnRef, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.to_string())
}

/// Every column of the database `conn` is connected to that looks personal and has no rule
/// in `privacy.rules` (a `keep` rule counts as one: the column was looked at).
pub async fn suspected_columns(conn: &Conn, privacy: &PrivacySection) -> Result<Vec<Suspect>> {
    let columns = conn.privacy_columns().await?;
    suspects_among(conn, privacy, &columns).await
}

/// [`suspected_columns`] among columns already read.
pub async fn suspects_among(
    conn: &Conn,
    privacy: &PrivacySection,
    columns: &[PrivacyColumn],
) -> Result<Vec<Suspect>> {
    let mut out = Vec::new();
    for c in columns {
        if c.table.name == MARKER_TABLE || c.table.prefixed() == MARKER_TABLE {
            continue;
        }
        let r = c.column_ref();
        if privacy.rule(&r).is_some() {
            continue;
        }
        if let Some(why) = by_name(&c.column) {
            out.push(Suspect {
                column: r,
                reason: why,
            });
            continue;
        }
        if !matches!(c.category, TypeCategory::Text | TypeCategory::Json) || c.key {
            continue;
        }
        let values = conn
            .sample_column(&c.table, &c.column, None, SAMPLE_ROWS)
            .await?;
        let values: Vec<&str> = values.iter().filter_map(|(_, v)| v.as_deref()).collect();
        if let Some(why) = by_values(&values) {
            out.push(Suspect {
                column: r,
                reason: why,
            });
        }
    }
    Ok(out)
}

/// Why a column's name looks personal.
pub fn by_name(column: &str) -> Option<String> {
    let c = column.to_lowercase();
    let tokens: Vec<&str> = c.split(['_', '-']).collect();
    let groups: [(&[&str], &str); 9] = [
        (
            &[
                "nom",
                "prenom",
                "prénom",
                "name",
                "firstname",
                "lastname",
                "surname",
                "patronyme",
            ],
            "a person's name",
        ),
        (
            &["email", "mail", "courriel", "e-mail"],
            "an e-mail address",
        ),
        (
            &[
                "telephone",
                "téléphone",
                "tel",
                "phone",
                "mobile",
                "portable",
                "fax",
            ],
            "a phone number",
        ),
        (
            &["naissance", "birth", "birthdate", "birthday", "dob", "ddn"],
            "a date of birth",
        ),
        (
            &["adresse", "address", "rue", "street", "domicile"],
            "an address",
        ),
        (&["iban", "bic", "rib"], "bank details"),
        (
            &["nir", "secu", "ssn", "insee", "securite", "sécurité"],
            "a social security number",
        ),
        (&["ip"], "an IP address"),
        (&["passeport", "passport", "cni"], "an identity document"),
    ];
    for (words, what) in groups {
        if tokens.iter().any(|t| words.contains(t)) {
            return Some(format!("its name suggests {what}"));
        }
    }
    None
}

/// Why a sample of values looks personal: at least a third of the values (and at least
/// two) are e-mail addresses, French phone numbers, IBANs or social security numbers.
pub fn by_values(values: &[&str]) -> Option<String> {
    if values.is_empty() {
        return None;
    }
    let checks: [(Check, &str); 4] = [
        (contains_email, "e-mail addresses"),
        (is_phone, "phone numbers"),
        (is_iban, "IBANs"),
        (is_nir, "social security numbers (NIR)"),
    ];
    for (check, what) in checks {
        let n = values.iter().filter(|v| check(v)).count();
        if n >= 2 && n * 3 >= values.len() {
            return Some(format!(
                "{n} of {} sampled values look like {what}",
                values.len()
            ));
        }
    }
    None
}

/// A test of one value.
type Check = fn(&str) -> bool;

fn contains_email(v: &str) -> bool {
    v.split(|c: char| c.is_whitespace() || "\"'<>,;:()[]{}".contains(c))
        .any(|w| {
            let Some((local, domain)) = w.split_once('@') else {
                return false;
            };
            // A top-level domain of letters: `user@127.0.0.1` (a database account) is not
            // an address.
            let tld = domain.rsplit('.').next().unwrap_or("");
            !local.is_empty()
                && domain.contains('.')
                && tld.len() >= 2
                && tld.chars().all(|c| c.is_ascii_alphabetic())
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        })
}

fn is_phone(v: &str) -> bool {
    let v = v.trim();
    if !v
        .chars()
        .all(|c| c.is_ascii_digit() || " .-+()".contains(c))
    {
        return false;
    }
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let national = if v.starts_with('+') || v.starts_with("00") {
        let d = digits.trim_start_matches("00");
        match d.strip_prefix("33") {
            Some(rest) => format!("0{rest}"),
            None => return (8..=15).contains(&d.len()),
        }
    } else {
        digits
    };
    national.len() == 10 && national.starts_with('0') && national.as_bytes()[1] != b'0'
}

fn is_iban(v: &str) -> bool {
    let s: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len())
        || !s.is_ascii()
        || !s[..2].chars().all(|c| c.is_ascii_uppercase())
        || !s[2..4].chars().all(|c| c.is_ascii_digit())
        || !s.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return false;
    }
    let rearranged = format!("{}{}", &s[4..], &s[..4]);
    let mut rem: u64 = 0;
    for c in rearranged.chars() {
        let d = c.to_digit(36).unwrap_or(0) as u64;
        rem = if d >= 10 {
            (rem * 100 + d) % 97
        } else {
            (rem * 10 + d) % 97
        };
    }
    rem == 1
}

fn is_nir(v: &str) -> bool {
    let s: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() != 15 || !s.is_ascii() || !matches!(s.as_bytes()[0], b'1' | b'2') {
        return false;
    }
    // Corsica's departments 2A and 2B count as 19 and 18 for the key.
    let body = s[..13].replace("2A", "19").replace("2B", "18");
    let (Ok(n), Ok(key)) = (body.parse::<u64>(), s[13..].parse::<u64>()) else {
        return false;
    };
    97 - n % 97 == key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_personal() {
        assert!(by_name("nom").is_some());
        assert!(by_name("nom_jeune_fille").is_some());
        assert!(by_name("date_naissance").unwrap().contains("date of birth"));
        assert!(by_name("numero_secu").unwrap().contains("social security"));
        assert!(by_name("iban").is_some());
        assert!(by_name("telephone_pro").is_some());
        assert!(by_name("nombre").is_none());
        assert!(by_name("statut").is_none());
        assert!(by_name("montant_frais").is_none());
        assert!(by_name("type_code").is_none());
    }

    #[test]
    fn values_that_look_personal() {
        let mails = ["jean.dupont@example.org", "x", "a.b@mairie-marseille.fr"];
        assert!(by_values(&mails).unwrap().contains("e-mail"));
        assert_eq!(by_values(&["mairie@127.0.0.1", "root@localhost"]), None);
        let phones = ["04 91 55 11 11", "+33 6 39 98 80 86", "0612345678"];
        assert!(by_values(&phones).unwrap().contains("phone"));
        let ibans = [
            "FR76 3000 6000 0112 3456 7890 189",
            "FR7630006000011234567890189",
        ];
        assert!(by_values(&ibans).unwrap().contains("IBAN"));
        // 1 84 12 76 451 089 + key 46.
        let nirs = ["184127645108946", "1 84 12 76 451 089 46"];
        assert!(by_values(&nirs).unwrap().contains("NIR"));
        let plain = ["deposee", "en_cours", "1234", "13006", "DEM-2024-000001"];
        assert_eq!(by_values(&plain), None);
        assert!(!is_iban("FR7630006000011234567890188"));
        assert!(!is_nir("184127645108947"));
    }
}
