//! The plausible French values of `fake` rules: first names, last names and streets from
//! small lists shipped with the project (`fake/*.txt`), a value chosen by the keyed hash of
//! the original so that the same person gets the same pseudonym under the same key.
//!
//! The lists share no entry with the demo data (`data/citoyens.csv`): a pseudonym is then
//! never mistaken for somebody's real name in the demo copy.

use std::sync::OnceLock;

/// What a `fake` value is, inferred from the column's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeKind {
    FirstName,
    LastName,
    /// `<house number> <street>`.
    Street,
}

impl FakeKind {
    /// The kind of a column by its name, or None when it cannot be told: `prenom` and
    /// `first_name` are first names, `nom` and `last_name` last names, `adresse` and `rue`
    /// streets.
    pub fn of_column(column: &str) -> Option<FakeKind> {
        let c = column.to_lowercase();
        let tokens: Vec<&str> = c.split(['_', '-', ' ']).collect();
        let has = |words: &[&str]| tokens.iter().any(|t| words.contains(t));
        if has(&["prenom", "prénom", "firstname", "givenname"])
            || c.contains("first_name")
            || c.contains("given_name")
        {
            Some(FakeKind::FirstName)
        } else if has(&["nom", "lastname", "surname", "familyname", "patronyme"])
            || c.contains("last_name")
            || c.contains("family_name")
            || c == "name"
        {
            Some(FakeKind::LastName)
        } else if has(&["adresse", "address", "rue", "street", "voie"]) {
            Some(FakeKind::Street)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FakeKind::FirstName => "first name",
            FakeKind::LastName => "last name",
            FakeKind::Street => "street",
        }
    }

    /// The list values are chosen from.
    pub fn list(self) -> &'static [&'static str] {
        static FIRST: OnceLock<Vec<&'static str>> = OnceLock::new();
        static LAST: OnceLock<Vec<&'static str>> = OnceLock::new();
        static STREETS: OnceLock<Vec<&'static str>> = OnceLock::new();
        let (cell, text) = match self {
            FakeKind::FirstName => (&FIRST, include_str!("fake/prenoms.txt")),
            FakeKind::LastName => (&LAST, include_str!("fake/noms.txt")),
            FakeKind::Street => (&STREETS, include_str!("fake/rues.txt")),
        };
        cell.get_or_init(|| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect()
        })
    }
}

/// The index into a list of `n` entries the servers compute from an HMAC: its first four
/// bytes, big-endian, modulo `n` (0-based). When that entry equals the original value, the
/// next one is taken instead (the pseudonym never equals the original).
pub fn index_of(hmac: &[u8; 32], n: usize) -> usize {
    (u32::from_be_bytes([hmac[0], hmac[1], hmac[2], hmac[3]]) as usize) % n
}

/// The house number of a fake street: bytes 4 and 5 of the HMAC, modulo 150, plus one.
pub fn house_number(hmac: &[u8; 32]) -> u32 {
    u32::from(u16::from_be_bytes([hmac[4], hmac[5]])) % 150 + 1
}

/// The fake value of `original` as the servers compute it (used to check them).
pub fn value_of(kind: FakeKind, hmac: &[u8; 32], original: &str) -> String {
    let list = kind.list();
    let mut i = index_of(hmac, list.len());
    let pick = |i: usize| match kind {
        FakeKind::Street => format!("{} {}", house_number(hmac), list[i]),
        _ => list[i].to_string(),
    };
    if pick(i) == original {
        i = (i + 1) % list.len();
    }
    pick(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_inferred_from_column_names() {
        assert_eq!(FakeKind::of_column("prenom"), Some(FakeKind::FirstName));
        assert_eq!(FakeKind::of_column("nom"), Some(FakeKind::LastName));
        assert_eq!(
            FakeKind::of_column("nom_naissance"),
            Some(FakeKind::LastName)
        );
        assert_eq!(FakeKind::of_column("last_name"), Some(FakeKind::LastName));
        assert_eq!(FakeKind::of_column("adresse"), Some(FakeKind::Street));
        assert_eq!(FakeKind::of_column("adresse_rue"), Some(FakeKind::Street));
        assert_eq!(FakeKind::of_column("commentaire"), None);
        assert_eq!(FakeKind::of_column("nombre"), None);
    }

    #[test]
    fn lists_are_loaded_without_duplicates_nor_demo_names() {
        for kind in [FakeKind::FirstName, FakeKind::LastName, FakeKind::Street] {
            let l = kind.list();
            assert!(l.len() >= 50, "{kind:?}");
            let set: std::collections::HashSet<_> = l.iter().collect();
            assert_eq!(set.len(), l.len(), "{kind:?} has duplicates");
        }
        let demo = include_str!("../../data/citoyens.csv");
        for line in demo.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            assert!(
                !FakeKind::LastName.list().contains(&fields[2]),
                "{}",
                fields[2]
            );
            assert!(
                !FakeKind::FirstName.list().contains(&fields[3]),
                "{}",
                fields[3]
            );
        }
    }

    #[test]
    fn a_fake_value_never_equals_the_original() {
        let h = [0u8; 32];
        let first = FakeKind::FirstName.list()[0];
        assert_eq!(value_of(FakeKind::FirstName, &h, "x"), first);
        assert_ne!(value_of(FakeKind::FirstName, &h, first), first);
        assert_eq!(
            value_of(FakeKind::Street, &h, "x"),
            format!("1 {}", FakeKind::Street.list()[0])
        );
    }
}
