//! The audit as a JUnit XML report, for CI systems that show test results: one
//! `<testsuite>` per target, one `<testcase>` per check; a failed check is a `<failure>`
//! (its type is the severity), a check that could not be evaluated an `<error>`, an accepted
//! risk (`audit.ignore`) `<skipped>`. A target that could not be audited at all is one
//! test case, `connect`, in error.
//!
//! Everything written comes from servers (role names, hba lines, error messages) and is
//! escaped; characters XML 1.0 cannot carry at all (most control characters) are dropped.

use std::fmt::Write as _;

use super::{severity_str, FindingStatus, Summary, TargetReport};

/// Escapes text for XML character data and attribute values alike.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if allowed(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// Escapes an attribute value: as [`escape`], and line breaks and tabs as character
/// references, which attribute normalisation would otherwise turn into spaces.
pub fn escape_attr(s: &str) -> String {
    escape(s)
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

/// The characters XML 1.0 allows (production [2] Char), besides tab and line breaks.
fn allowed(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// The whole report.
pub fn render(reports: &[TargetReport]) -> String {
    let mut totals = (0, 0, 0, 0);
    let mut suites = String::new();
    for r in reports {
        let (tests, failures, errors, skipped) = suite(&mut suites, r);
        totals.0 += tests;
        totals.1 += failures;
        totals.2 += errors;
        totals.3 += skipped;
    }
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"mairie-dba audit\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
        totals.0, totals.1, totals.2, totals.3
    );
    out.push_str(&suites);
    out.push_str("</testsuites>\n");
    out
}

/// Writes one target's `<testsuite>`; returns (tests, failures, errors, skipped).
fn suite(out: &mut String, r: &TargetReport) -> (usize, usize, usize, usize) {
    let class = format!("mairie-dba.audit.{}", r.target);
    let (tests, failures, errors, skipped) = match &r.error {
        Some(_) => (1, 0, 1, 0),
        None => {
            let s = Summary::of(&r.findings);
            (r.findings.len(), s.fail, s.error, s.ignored)
        }
    };
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        escape_attr(&class),
        r.seconds
    );
    let _ = writeln!(
        out,
        "    <properties>\n      <property name=\"engine\" value=\"{}\"/>\n      <property name=\"status\" value=\"{}\"/>",
        r.engine,
        r.status.as_str()
    );
    if let Some(v) = &r.server_version {
        let _ = writeln!(
            out,
            "      <property name=\"server_version\" value=\"{}\"/>",
            escape_attr(v)
        );
    }
    out.push_str("    </properties>\n");
    if let Some(e) = &r.error {
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"connect\">\n      <error message=\"{}\" type=\"unreachable\">{}</error>\n    </testcase>",
            escape_attr(&class),
            escape_attr(e),
            escape(e)
        );
    }
    for f in &r.findings {
        let c = f.check;
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\">",
            escape_attr(&class),
            escape_attr(&format!("{} {}", c.id, c.title))
        );
        let sev = severity_str(c.severity);
        match f.status {
            FindingStatus::Pass => {}
            FindingStatus::Fail => {
                let mut body = format!("{}\n\nremediation: {}", f.detail, c.remediation);
                if !f.fix.is_empty() {
                    body.push_str("\n\nfix:\n");
                    body.push_str(&f.fix.join("\n"));
                }
                if !c.cis.is_empty() {
                    body.push_str(&format!("\n\n{}", c.cis));
                }
                let _ = write!(
                    out,
                    "\n      <failure message=\"{}\" type=\"{sev}\">{}</failure>\n    ",
                    escape_attr(&f.detail),
                    escape(&body)
                );
            }
            FindingStatus::Error => {
                let _ = write!(
                    out,
                    "\n      <error message=\"{}\" type=\"{sev}\">{}</error>\n    ",
                    escape_attr(&f.detail),
                    escape(&f.detail)
                );
            }
            FindingStatus::Ignored => {
                let _ = write!(
                    out,
                    "\n      <skipped message=\"{}\"/>\n    ",
                    escape_attr(&f.detail)
                );
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n");
    (tests, failures, errors, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Severity;
    use crate::audit::{CheckDef, Finding, Probe, Verdict};
    use crate::config::EngineKind;
    use crate::output::Status;

    #[test]
    fn escapes_markup_quotes_and_drops_what_xml_cannot_carry() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape("x\u{0}y\u{1b}z\u{FFFE}"), "xyz");
        assert_eq!(escape("é\t\n✓"), "é\t\n✓");
        assert_eq!(escape_attr("l1\nl2\tx"), "l1&#10;l2&#9;x");
        assert_eq!(escape("]]>"), "]]&gt;");
    }

    static CHECK: CheckDef = CheckDef {
        id: "PG-TEST-01",
        title: "Roles named <&>",
        severity: Severity::High,
        rationale: "r",
        cis: "",
        remediation: "DROP ROLE \"x\";",
        probe: Probe::Custom,
    };

    #[test]
    fn one_suite_per_target_one_case_per_check() {
        let report = TargetReport {
            target: "pg".into(),
            engine: EngineKind::Postgres,
            status: Status::Critical,
            server_version: Some("15.20".into()),
            error: None,
            findings: vec![
                Finding::new(&CHECK, Verdict::fail("role <evil> & co"), false),
                Finding::new(&CHECK, Verdict::Error("permission denied".into()), false),
                Finding::new(&CHECK, Verdict::fail("accepted"), true),
                Finding::new(&CHECK, Verdict::Pass("fine".into()), false),
            ],
            seconds: 0.5,
        };
        let down = TargetReport {
            target: "my".into(),
            engine: EngineKind::Mysql,
            status: Status::Critical,
            server_version: None,
            error: Some("connection refused".into()),
            findings: vec![],
            seconds: 0.0,
        };
        let xml = render(&[report, down]);
        assert!(xml.starts_with("<?xml"), "{xml}");
        assert_eq!(xml.matches("<testsuite ").count(), 2);
        assert_eq!(xml.matches("<testcase ").count(), 5);
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert_eq!(xml.matches("<error ").count(), 2);
        assert_eq!(xml.matches("<skipped ").count(), 1);
        assert!(
            xml.contains("name=\"PG-TEST-01 Roles named &lt;&amp;&gt;\""),
            "{xml}"
        );
        assert!(xml.contains("type=\"high\""), "{xml}");
        assert!(xml.contains("role &lt;evil&gt; &amp; co"), "{xml}");
        assert!(!xml.contains("<evil>"), "{xml}");
        assert!(xml.contains(
            "<testsuites name=\"mairie-dba audit\" tests=\"5\" failures=\"1\" errors=\"2\" skipped=\"1\">"
        ), "{xml}");
    }
}
