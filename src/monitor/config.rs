//! The `monitor:` section of `config_global.yml`: where agents deposit, where validated
//! backups go, where the history is kept, and the expected jobs.
//!
//! The YAML shapes deny unknown keys like the rest of the configuration. A job is checked as
//! it is read (`try_from`), so that its errors carry the parser's `file:line:column` and key
//! path (`monitor.jobs[2]: …`) exactly like a typo does.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

/// The `monitor:` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSection {
    pub deposit_dir: PathBuf,
    /// A directory, or `s3://bucket/prefix` (with [`MonitorSection::s3`]).
    pub validated_dir: PathBuf,
    /// For a `validated_dir` of `s3://bucket/prefix`: the endpoint, region, addressing,
    /// encryption and storage class (credentials come from the environment, never from here).
    #[serde(default)]
    pub s3: Option<crate::storage::S3Options>,
    /// `sqlite:PATH` (default: `sqlite:<state_dir>/monitor.db`), `postgres://user@host:port/db`,
    /// or `{url: postgres://…, password_env: VAR}`.
    #[serde(default)]
    pub history: Option<HistorySetting>,
    #[serde(default = "default_report_max_age_days")]
    pub report_max_age_days: u32,
    #[serde(default = "default_collection_window_minutes")]
    pub collection_window_minutes: u32,
    #[serde(default = "default_keep_validated")]
    pub keep_validated: KeepValidated,
    #[serde(default = "default_scan_interval_minutes")]
    pub scan_interval_minutes: ScanInterval,
    /// Where `monitor serve` listens (default 127.0.0.1:8480).
    #[serde(default)]
    pub listen: Option<String>,
    /// Alerts on status changes: e-mail and/or a webhook ([`super::notify`]).
    #[serde(default)]
    pub notify: Option<NotifySection>,
    #[serde(default)]
    pub jobs: Vec<Job>,
}

fn default_report_max_age_days() -> u32 {
    2
}
fn default_collection_window_minutes() -> u32 {
    120
}
fn default_keep_validated() -> KeepValidated {
    KeepValidated(1)
}
fn default_scan_interval_minutes() -> ScanInterval {
    ScanInterval(5)
}

/// The `agent:` section, on a site that sends its backups to the monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    pub company: Component,
    pub city: Component,
    pub site: Component,
    /// A local path (an NFS mount; relative: to the base directory) or an rsync destination
    /// `user@host:/path` (rsync over ssh).
    pub deposit: String,
    /// rsync's options for an rsync destination.
    #[serde(default = "default_rsync_options")]
    pub rsync_options: Vec<String>,
    /// The targets whose backups are pushed (default: every target with a `backup:` section).
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_rsync_options() -> Vec<String> {
    vec!["--archive".into(), "--mkpath".into()]
}

/// One directory name, checked as it is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Component(pub String);

impl TryFrom<String> for Component {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if is_path_component(&s) {
            Ok(Component(s))
        } else {
            Err(format!(
                "`{s}` must be one directory name (not empty, no `/`, not `..`)"
            ))
        }
    }
}

impl std::ops::Deref for Component {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// How many validated versions of a database are kept: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct KeepValidated(pub u32);

impl TryFrom<u32> for KeepValidated {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        if n == 0 {
            return Err(
                "keep_validated must be at least 1: the last healthy backup is always kept".into(),
            );
        }
        Ok(KeepValidated(n))
    }
}

/// Minutes between two scans of `monitor serve`: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct ScanInterval(pub u32);

impl TryFrom<u32> for ScanInterval {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        if n == 0 {
            return Err("scan_interval_minutes must be at least 1".into());
        }
        Ok(ScanInterval(n))
    }
}

/// Where the history is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "HistoryEntry")]
pub enum HistorySetting {
    /// A SQLite file (relative: to the configuration's base directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database; the password only from the environment.
    Postgres {
        url: String,
        password_env: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HistoryEntry {
    Text(String),
    Map(HistoryMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryMap {
    url: String,
    #[serde(default)]
    password_env: Option<String>,
}

impl TryFrom<HistoryEntry> for HistorySetting {
    type Error = String;
    fn try_from(e: HistoryEntry) -> Result<Self, String> {
        let (url, password_env) = match e {
            HistoryEntry::Text(t) => (t, None),
            HistoryEntry::Map(m) => (m.url, m.password_env),
        };
        if let Some(path) = url.strip_prefix("sqlite:") {
            if password_env.is_some() {
                return Err("history: password_env is for a PostgreSQL history".into());
            }
            if path.is_empty() {
                return Err(
                    "history: `sqlite:` needs a path (sqlite:/var/lib/mairie-dba/monitor.db)"
                        .into(),
                );
            }
            return Ok(HistorySetting::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let cfg = tokio_postgres::Config::from_str(&url)
                .map_err(|e| format!("history: not a PostgreSQL URL: {e}"))?;
            if cfg.get_password().is_some() {
                return Err("history: a password never sits in the configuration: remove it from the URL and name its environment variable with password_env".into());
            }
            return Ok(HistorySetting::Postgres { url, password_env });
        }
        Err(format!(
            "history: `{}` is neither sqlite:PATH nor postgres://user@host:port/database",
            url.chars().take(40).collect::<String>()
        ))
    }
}

/// `monitor.notify`: where alerts go and how often a job that stays bad is recalled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "NotifyEntry")]
pub struct NotifySection {
    /// Hours between two reminders for a job that stays bad; 0: no reminders.
    pub remind_hours: u32,
    pub email: Option<EmailSection>,
    pub webhook: Option<WebhookSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyEntry {
    #[serde(default = "default_remind_hours")]
    remind_hours: u32,
    #[serde(default)]
    email: Option<EmailSection>,
    #[serde(default)]
    webhook: Option<WebhookSection>,
}

fn default_remind_hours() -> u32 {
    24
}

impl TryFrom<NotifyEntry> for NotifySection {
    type Error = String;
    fn try_from(e: NotifyEntry) -> Result<Self, String> {
        if e.email.is_none() && e.webhook.is_none() {
            return Err(
                "notify: give it an `email:` or a `webhook:` (or both), or remove it".into(),
            );
        }
        Ok(NotifySection {
            remind_hours: e.remind_hours,
            email: e.email,
            webhook: e.webhook,
        })
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or a trusted network).
    None,
    /// Plain connection upgraded by STARTTLS, which is required: a server that does not offer
    /// it is an error, never a silent fall back to plain text.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// `monitor.notify.email`, checked as it is read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "EmailEntry")]
pub struct EmailSection {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
    /// The SMTP login, with its password in the environment variable `password_env`.
    pub user: Option<String>,
    pub password_env: Option<String>,
    /// PEM certificates to trust instead of the system's CA store (a private CA).
    pub ca_file: Option<PathBuf>,
    pub timeout_seconds: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailEntry {
    smtp_host: String,
    #[serde(default)]
    smtp_port: Option<u16>,
    #[serde(default)]
    tls: Option<SmtpTls>,
    from: String,
    to: OneOrMany,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default = "default_notify_timeout")]
    timeout_seconds: u32,
}

fn default_notify_timeout() -> u32 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// An address in an `e-mail: …` setting: `ops@ville.fr` or `Ops <ops@ville.fr>`.
fn mailbox(key: &str, s: &str) -> Result<lettre::message::Mailbox, String> {
    s.parse::<lettre::message::Mailbox>().map_err(|e| {
        format!("email: {key}: `{s}` is not an e-mail address (ops@ville.fr or \"Ops <ops@ville.fr>\"): {e}")
    })
}

/// A host the connection never leaves the machine for.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An environment variable's name: a secret is named, never written.
fn env_name(key: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{key}: `{v}` is not the name of an environment variable (letters, digits, _)"
        ));
    }
    Ok(())
}

impl TryFrom<EmailEntry> for EmailSection {
    type Error = String;
    fn try_from(e: EmailEntry) -> Result<Self, String> {
        if e.smtp_host.trim().is_empty() || e.smtp_host.contains(['/', ' ', '\0']) {
            return Err(format!(
                "email: smtp_host: `{}` is not a host name or address",
                e.smtp_host
            ));
        }
        let tls = e.tls.unwrap_or(SmtpTls::Starttls);
        let from = mailbox("from", &e.from)?;
        let to = match e.to {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if to.is_empty() {
            return Err("email: to: give at least one recipient".into());
        }
        let to = to
            .iter()
            .map(|s| mailbox("to", s))
            .collect::<Result<Vec<_>, _>>()?;
        match (&e.user, &e.password_env) {
            (Some(_), None) => {
                return Err("email: user: needs password_env, the environment variable that holds the SMTP password (never the password itself)".into())
            }
            (None, Some(_)) => return Err("email: password_env: given without a user".into()),
            (Some(u), Some(v)) => {
                if u.is_empty() {
                    return Err("email: user: empty".into());
                }
                env_name("email: password_env", v)?;
                if tls == SmtpTls::None && !is_loopback(&e.smtp_host) {
                    return Err(format!(
                        "email: a password is never sent in clear to another host: with user set, tls must be starttls or tls for `{}` (tls: none is allowed with a login only on 127.0.0.1 / localhost)",
                        e.smtp_host
                    ));
                }
            }
            (None, None) => {}
        }
        if e.ca_file.is_some() && tls == SmtpTls::None {
            return Err("email: ca_file: given, but tls is none".into());
        }
        if e.timeout_seconds == 0 {
            return Err("email: timeout_seconds must be at least 1".into());
        }
        Ok(EmailSection {
            smtp_port: e.smtp_port.unwrap_or(tls.default_port()),
            smtp_host: e.smtp_host,
            tls,
            from,
            to,
            user: e.user,
            password_env: e.password_env,
            ca_file: e.ca_file,
            timeout_seconds: e.timeout_seconds,
        })
    }
}

/// `monitor.notify.webhook`: a JSON POST.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WebhookEntry")]
pub struct WebhookSection {
    pub url: WebhookUrl,
    /// PEM certificates to trust instead of the system's CA store, for an https URL.
    pub ca_file: Option<PathBuf>,
    pub timeout_seconds: u32,
}

/// Where the webhook's URL comes from: Slack, Mattermost or Teams URLs carry their secret in
/// the path, so it may be kept out of the configuration (`url_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookUrl {
    Inline(String),
    Env(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookEntry {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default = "default_webhook_timeout")]
    timeout_seconds: u32,
}

fn default_webhook_timeout() -> u32 {
    10
}

/// Checks a webhook URL: absolute http or https, with a host, no user or password in it.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| "webhook: url: not a URL (https://chat.example/hooks/…)".to_string())?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("webhook: url: must start with http:// or https://".into()),
    }
    let Some(auth) = uri.authority() else {
        return Err("webhook: url: has no host".into());
    };
    if auth.as_str().contains('@') {
        return Err("webhook: url: a user or password never sits in the URL".into());
    }
    if auth.host().is_empty() {
        return Err("webhook: url: has no host".into());
    }
    Ok(())
}

impl TryFrom<WebhookEntry> for WebhookSection {
    type Error = String;
    fn try_from(e: WebhookEntry) -> Result<Self, String> {
        let url = match (e.url, e.url_env) {
            (Some(u), None) => {
                check_webhook_url(&u)?;
                WebhookUrl::Inline(u)
            }
            (None, Some(v)) => {
                env_name("webhook: url_env", &v)?;
                WebhookUrl::Env(v)
            }
            _ => return Err("webhook: give one of url and url_env".into()),
        };
        if e.timeout_seconds == 0 {
            return Err("webhook: timeout_seconds must be at least 1".into());
        }
        Ok(WebhookSection {
            url,
            ca_file: e.ca_file,
            timeout_seconds: e.timeout_seconds,
        })
    }
}

/// How often a job is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Once,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Hourly => "hourly",
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
            Frequency::Once => "once",
        }
    }
}

/// When, within its period, a job is expected (in the job's time zone, UTC by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Minute past each hour.
    Hourly {
        minute: u32,
    },
    Daily {
        time: NaiveTime,
    },
    Weekly {
        day: Weekday,
        time: NaiveTime,
    },
    /// Day 1 to 31; a month shorter than `day` is expected on its last day.
    Monthly {
        day: u32,
        time: NaiveTime,
    },
    Once {
        at: NaiveDateTime,
    },
}

/// One expected job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "JobEntry")]
pub struct Job {
    pub id: String,
    pub company: String,
    pub city: String,
    pub site: String,
    pub database: String,
    pub engine: String,
    pub frequency: Frequency,
    pub when: When,
    pub grace_minutes: u32,
    /// The zone `at` is read in (DST-correct); None: UTC.
    pub timezone: Option<Tz>,
}

impl Job {
    /// `company/city/site`, the site's directory under the deposit and validated trees.
    pub fn site_path(&self) -> PathBuf {
        [&self.company, &self.city, &self.site].iter().collect()
    }

    /// The schedule in words: `daily 02:00 UTC`, `weekly monday 23:30 Europe/Paris`.
    pub fn schedule_text(&self) -> String {
        let zone = self.timezone.map(|t| t.name()).unwrap_or("UTC");
        let hm = |t: &NaiveTime| t.format("%H:%M").to_string();
        match &self.when {
            When::Hourly { minute } => format!("hourly :{minute:02} {zone}"),
            When::Daily { time } => format!("daily {} {zone}", hm(time)),
            When::Weekly { day, time } => {
                format!("weekly {} {} {zone}", weekday_name(*day), hm(time))
            }
            When::Monthly { day, time } => format!("monthly day {day} {} {zone}", hm(time)),
            When::Once { at } => format!("once {} {zone}", at.format("%Y-%m-%d %H:%M")),
        }
    }
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobEntry {
    #[serde(default)]
    id: Option<String>,
    company: String,
    city: String,
    site: String,
    database: String,
    engine: String,
    frequency: Frequency,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    day: Option<DayEntry>,
    #[serde(default = "default_grace_minutes")]
    grace_minutes: u32,
    #[serde(default)]
    timezone: Option<String>,
}

fn default_grace_minutes() -> u32 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DayEntry {
    Number(u32),
    Name(String),
}

impl fmt::Display for DayEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayEntry::Number(n) => write!(f, "{n}"),
            DayEntry::Name(s) => f.write_str(s),
        }
    }
}

/// A name that becomes one directory: not empty, no separator, not `.` or `..`, no NUL.
pub fn is_path_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

const ENGINES: [&str; 3] = ["postgres", "mysql", "mssql"];

impl TryFrom<JobEntry> for Job {
    type Error = String;
    fn try_from(e: JobEntry) -> Result<Self, String> {
        for (key, v) in [
            ("company", &e.company),
            ("city", &e.city),
            ("site", &e.site),
            ("database", &e.database),
        ] {
            if !is_path_component(v) {
                return Err(format!(
                    "{key}: `{v}` must be one directory name (not empty, no `/`, not `..`)"
                ));
            }
        }
        if !ENGINES.contains(&e.engine.as_str()) {
            return Err(format!(
                "engine: `{}` is not one of {}",
                e.engine,
                ENGINES.join(", ")
            ));
        }
        let id =
            e.id.unwrap_or_else(|| format!("{}-{}-{}-{}", e.company, e.city, e.site, e.database));
        if id.is_empty() || id.contains(['/', '\0']) || id.chars().any(char::is_whitespace) {
            return Err(format!("id: `{id}` must be a word (no spaces, no `/`)"));
        }
        let timezone = match &e.timezone {
            None => None,
            Some(name) => Some(Tz::from_str(name).map_err(|_| {
                format!("timezone: `{name}` is not an IANA time zone (Europe/Paris, UTC …)")
            })?),
        };
        let time = |at: &Option<String>| -> Result<NaiveTime, String> {
            let at = at.as_deref().ok_or_else(|| {
                format!("at: required for a {} job (HH:MM)", e.frequency.as_str())
            })?;
            NaiveTime::parse_from_str(at, "%H:%M")
                .map_err(|_| format!("at: `{at}` is not a time of day HH:MM (00:00 to 23:59)"))
        };
        let no_day = |what: &str| -> Result<(), String> {
            match &e.day {
                Some(d) => Err(format!(
                    "day: `{d}` is only for weekly and monthly jobs, not {what}"
                )),
                None => Ok(()),
            }
        };
        let when = match e.frequency {
            Frequency::Hourly => {
                no_day("hourly")?;
                let minute = match e.at.as_deref() {
                    None => 0,
                    Some(at) => at
                        .strip_prefix(':')
                        .and_then(|m| (m.len() == 2).then_some(m))
                        .and_then(|m| m.parse::<u32>().ok())
                        .filter(|m| *m < 60)
                        .ok_or_else(|| {
                            format!("at: `{at}` is not a minute past the hour (:MM, e.g. \":15\")")
                        })?,
                };
                When::Hourly { minute }
            }
            Frequency::Daily => {
                no_day("daily")?;
                When::Daily { time: time(&e.at)? }
            }
            Frequency::Weekly => {
                let day = match &e.day {
                    Some(DayEntry::Name(n)) => Weekday::from_str(n).map_err(|_| {
                        format!("day: `{n}` is not a day of the week (monday … sunday)")
                    })?,
                    Some(d) => {
                        return Err(format!(
                            "day: `{d}` is not a day of the week (monday … sunday)"
                        ))
                    }
                    None => return Err("day: required for a weekly job (monday … sunday)".into()),
                };
                When::Weekly {
                    day,
                    time: time(&e.at)?,
                }
            }
            Frequency::Monthly => {
                let day = match &e.day {
                    Some(DayEntry::Number(n)) if (1..=31).contains(n) => *n,
                    Some(d) => {
                        return Err(format!("day: `{d}` is not a day of the month (1 to 31)"))
                    }
                    None => return Err("day: required for a monthly job (1 to 31)".into()),
                };
                When::Monthly {
                    day,
                    time: time(&e.at)?,
                }
            }
            Frequency::Once => {
                no_day("once")?;
                let at =
                    e.at.as_deref()
                        .ok_or("at: required for a once job (a full time, 2026-12-06T02:00:00Z)")?;
                When::Once {
                    at: parse_full_time(at, timezone.is_some()).ok_or_else(|| {
                        format!("at: `{at}` is not a full time (2026-12-06T02:00:00Z or 2026-12-06 02:00)")
                    })?,
                }
            }
        };
        Ok(Job {
            id,
            company: e.company,
            city: e.city,
            site: e.site,
            database: e.database,
            engine: e.engine,
            frequency: e.frequency,
            when,
            grace_minutes: e.grace_minutes,
            timezone,
        })
    }
}

/// A full time: RFC 3339 (its offset applied, giving UTC; refused with a time zone) or a
/// naive `YYYY-MM-DD HH:MM[:SS]` / `YYYY-MM-DDTHH:MM[:SS]`, read in the job's zone.
fn parse_full_time(s: &str, zoned: bool) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return (!zoned).then(|| t.with_timezone(&Utc).naive_utc());
    }
    parse_naive(s)
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// A time given on the command line (`--now`): RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]` in UTC.
pub fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    parse_naive(s.trim_end_matches('Z')).map(|t| t.and_utc())
}

/// The checks that span jobs: unique ids.
pub fn check_jobs(jobs: &[Job]) -> Result<(), String> {
    for (i, j) in jobs.iter().enumerate() {
        if let Some(k) = jobs[..i].iter().position(|o| o.id == j.id) {
            return Err(format!(
                "monitor.jobs[{i}]: id `{}` is already the id of monitor.jobs[{k}] (give each job its own `id`)",
                j.id
            ));
        }
    }
    Ok(())
}

impl MonitorSection {
    /// The deposit zone is a directory (agents write files into it); the validated store a
    /// directory or a valid `s3://bucket/prefix`, with `s3:` options beside a URL only. The
    /// error names the key.
    pub fn check_stores(&self) -> Result<(), String> {
        let deposit = self.deposit_dir.to_string_lossy();
        if deposit.contains("://") {
            return Err(format!(
                "monitor.deposit_dir: `{deposit}`: the deposit zone is a directory the agents \
                 write into (only validated_dir may be s3://bucket/prefix)"
            ));
        }
        let validated = self.validated_dir.to_string_lossy();
        let remote = validated.contains("://");
        if remote && crate::storage::S3Url::parse(&validated).is_none() {
            return Err(format!(
                "monitor.validated_dir: `{validated}` is neither a directory nor a valid \
                 s3://bucket/prefix"
            ));
        }
        match &self.s3 {
            Some(_) if !remote => Err(format!(
                "monitor.s3: options for object storage, but validated_dir `{validated}` is not s3://…"
            )),
            Some(o) => o.validate().map_err(|e| format!("monitor.s3: {e:#}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> Result<MonitorSection, String> {
        serde_norway::from_str::<MonitorSection>(yaml).map_err(|e| e.to_string())
    }

    const BASE: &str = "deposit_dir: /d\nvalidated_dir: /v\n";

    #[test]
    fn a_validated_store_in_a_bucket_and_its_options() {
        let s = section(
            "deposit_dir: /d\nvalidated_dir: s3://validated/mon\ns3:\n  endpoint: http://127.0.0.1:18333\n  region: eu-west-3\n  sse: AES256\n",
        )
        .unwrap();
        s.check_stores().unwrap();
        assert_eq!(s.s3.as_ref().unwrap().region.as_deref(), Some("eu-west-3"));
        // Without options: AWS defaults.
        section("deposit_dir: /d\nvalidated_dir: s3://validated\n")
            .unwrap()
            .check_stores()
            .unwrap();
        // Options beside a directory.
        let e = section(&format!("{BASE}s3:\n  region: eu-west-3\n"))
            .unwrap()
            .check_stores()
            .unwrap_err();
        assert!(e.contains("monitor.s3") && e.contains("not s3://"), "{e}");
        // An unknown option, named with its line.
        let e = section(
            "deposit_dir: /d\nvalidated_dir: s3://val/m\ns3:\n  region: x\n  bucket_key: y\n",
        )
        .unwrap_err();
        assert!(
            e.contains("unknown field `bucket_key`") && e.contains("line 5"),
            "{e}"
        );
        // An option of a wrong value.
        let e = section("deposit_dir: /d\nvalidated_dir: s3://val/m\ns3:\n  sse: rot13\n")
            .unwrap()
            .check_stores()
            .unwrap_err();
        assert!(e.contains("monitor.s3") && e.contains("rot13"), "{e}");
        // Not a valid bucket URL; another scheme.
        for bad in ["s3://UPPER/x", "s3://b/../x", "gs://b/x"] {
            let e = section(&format!("deposit_dir: /d\nvalidated_dir: {bad}\n"))
                .unwrap()
                .check_stores()
                .unwrap_err();
            assert!(
                e.contains("monitor.validated_dir") && e.contains(bad),
                "{e}"
            );
        }
        // The deposit zone stays a directory.
        let e = section("deposit_dir: s3://b/d\nvalidated_dir: /v\n")
            .unwrap()
            .check_stores()
            .unwrap_err();
        assert!(e.contains("monitor.deposit_dir: `s3://b/d`"), "{e}");
    }

    #[test]
    fn defaults_and_a_full_daily_job() {
        let s = section(&format!(
            "{BASE}jobs:\n  - {{id: centre-mairie, company: ville, city: marseille, site: centre, database: mairie, engine: postgres, frequency: daily, at: \"02:00\", grace_minutes: 30}}\n"
        ))
        .unwrap();
        assert_eq!(s.report_max_age_days, 2);
        assert_eq!(s.collection_window_minutes, 120);
        assert_eq!(s.keep_validated, KeepValidated(1));
        assert_eq!(s.scan_interval_minutes, ScanInterval(5));
        assert_eq!(s.history, None);
        let j = &s.jobs[0];
        assert_eq!(j.id, "centre-mairie");
        assert_eq!(
            j.when,
            When::Daily {
                time: NaiveTime::from_hms_opt(2, 0, 0).unwrap()
            }
        );
        assert_eq!(j.grace_minutes, 30);
        assert_eq!(j.site_path(), PathBuf::from("ville/marseille/centre"));
    }

    #[test]
    fn every_frequency_reads_its_at_and_day() {
        let s = section(&format!(
            "{BASE}jobs:\n\
             - {{company: c, city: x, site: s, database: a, engine: mysql, frequency: hourly, at: \":15\"}}\n\
             - {{company: c, city: x, site: s, database: b, engine: mssql, frequency: weekly, day: sunday, at: \"23:30\", timezone: Europe/Paris}}\n\
             - {{company: c, city: x, site: s, database: d, engine: postgres, frequency: monthly, day: 31, at: \"01:00\"}}\n\
             - {{company: c, city: x, site: s, database: e, engine: postgres, frequency: once, at: \"2026-12-06T02:00:00+01:00\"}}\n"
        ))
        .unwrap();
        assert_eq!(s.jobs[0].id, "c-x-s-a");
        assert_eq!(s.jobs[0].when, When::Hourly { minute: 15 });
        assert!(matches!(
            s.jobs[1].when,
            When::Weekly {
                day: Weekday::Sun,
                ..
            }
        ));
        assert_eq!(s.jobs[1].timezone, Some(chrono_tz::Europe::Paris));
        assert!(matches!(s.jobs[2].when, When::Monthly { day: 31, .. }));
        assert_eq!(
            s.jobs[3].when,
            When::Once {
                at: parse_naive("2026-12-06 01:00").unwrap()
            }
        );
    }

    #[test]
    fn errors_name_line_and_key() {
        let job = |extra: &str| {
            section(&format!(
                "{BASE}jobs:\n  - company: c\n    city: x\n    site: s\n    database: a\n    engine: postgres\n{extra}"
            ))
            .unwrap_err()
        };
        let e = job("    frequency: daily\n    at: \"25:00\"\n");
        assert!(e.contains("jobs: at: `25:00` is not a time of day"), "{e}");
        assert!(e.contains("line "), "{e}");
        let e = job("    frequency: daily\n");
        assert!(e.contains("at: required for a daily job"), "{e}");
        let e = job("    frequency: weekly\n    at: \"02:00\"\n    day: funday\n");
        assert!(e.contains("`funday` is not a day of the week"), "{e}");
        let e = job("    frequency: monthly\n    at: \"02:00\"\n    day: 32\n");
        assert!(e.contains("`32` is not a day of the month"), "{e}");
        let e = job("    frequency: daily\n    at: \"02:00\"\n    day: 3\n");
        assert!(e.contains("only for weekly and monthly"), "{e}");
        let e = job("    frequency: fortnightly\n");
        assert!(e.contains("fortnightly"), "{e}");
        let e = job("    frequency: daily\n    at: \"02:00\"\n    timezone: Mars/Olympus\n");
        assert!(e.contains("not an IANA time zone"), "{e}");
        let e = job("    frequency: daily\n    at: \"02:00\"\n    gracce_minutes: 3\n");
        assert!(e.contains("unknown field `gracce_minutes`"), "{e}");
        let e = section(&format!(
            "{BASE}jobs:\n  - {{company: c, city: x, site: \"..\", database: a, engine: postgres, frequency: daily, at: \"02:00\"}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("site: `..` must be one directory name"), "{e}");
        let e = section(&format!("{BASE}keep_validated: 0\n")).unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = section(&format!("{BASE}listen_here: 1\n")).unwrap_err();
        assert!(e.contains("unknown field `listen_here`"), "{e}");
    }

    #[test]
    fn history_forms() {
        let h = |v: &str| section(&format!("{BASE}history: {v}\n")).map(|s| s.history.unwrap());
        assert_eq!(
            h("sqlite:/var/lib/m.db").unwrap(),
            HistorySetting::Sqlite("/var/lib/m.db".into())
        );
        assert_eq!(
            h("{url: \"postgres://mon@db:5432/monitor\", password_env: MON_PW}").unwrap(),
            HistorySetting::Postgres {
                url: "postgres://mon@db:5432/monitor".into(),
                password_env: Some("MON_PW".into())
            }
        );
        let e = h("\"postgres://mon:secret@db/monitor\"").unwrap_err();
        assert!(
            e.contains("never sits in the configuration") && !e.contains("secret@"),
            "{e}"
        );
        assert!(h("mysql://x").unwrap_err().contains("neither sqlite"));
    }

    #[test]
    fn notify_defaults_and_checks() {
        let n = |v: &str| section(&format!("{BASE}notify:\n{v}")).map(|s| s.notify.unwrap());
        let s = n("  email: {smtp_host: mail.ville.fr, from: dba@ville.fr, to: ops@ville.fr}\n")
            .unwrap();
        assert_eq!(s.remind_hours, 24);
        let e = s.email.unwrap();
        assert_eq!(
            (e.tls, e.smtp_port, e.timeout_seconds),
            (SmtpTls::Starttls, 587, 30)
        );
        assert_eq!(e.to.len(), 1);
        assert!(s.webhook.is_none());
        let e = n("  email: {smtp_host: h, tls: tls, from: \"DBA <dba@ville.fr>\", to: [a@b.fr, c@d.fr], user: u, password_env: SMTP_PW}\n")
            .unwrap()
            .email
            .unwrap();
        assert_eq!((e.smtp_port, e.to.len()), (465, 2));
        assert_eq!(e.from.email.to_string(), "dba@ville.fr");
        let e = n("  email: {smtp_host: localhost, tls: none, from: a@b.fr, to: [c@d.fr], user: u, password_env: P}\n")
            .unwrap()
            .email
            .unwrap();
        assert_eq!(e.smtp_port, 25);
        let w = n("  remind_hours: 0\n  webhook: {url_env: HOOK_URL}\n").unwrap();
        assert_eq!(w.remind_hours, 0);
        assert_eq!(w.webhook.unwrap().url, WebhookUrl::Env("HOOK_URL".into()));

        let err = |v: &str| n(v).unwrap_err();
        let e = err("  email: {smtp_host: h, tls: ssl, from: a@b.fr, to: [c@d.fr]}\n");
        assert!(
            e.contains("unknown variant `ssl`") && e.contains("line "),
            "{e}"
        );
        assert!(err("  email: {smtp_host: h, from: a@b.fr, to: []}\n")
            .contains("at least one recipient"));
        assert!(err("  email: {smtp_host: h, from: nobody, to: [c@d.fr]}\n")
            .contains("`nobody` is not an e-mail address"));
        assert!(
            err("  email: {smtp_host: h, from: a@b.fr, to: [c@d.fr], user: u}\n")
                .contains("needs password_env")
        );
        assert!(
            err("  email: {smtp_host: h, from: a@b.fr, to: [c@d.fr], password_env: P}\n")
                .contains("without a user")
        );
        assert!(err("  email: {smtp_host: h, from: a@b.fr, to: [c@d.fr], user: u, password_env: \"my pw\"}\n").contains("not the name of an environment variable"));
        assert!(err("  email: {smtp_host: smtp.example, tls: none, from: a@b.fr, to: [c@d.fr], user: u, password_env: P}\n").contains("never sent in clear"));
        assert!(
            err("  email: {smtp_host: h, from: a@b.fr, to: [c@d.fr], password: x}\n")
                .contains("unknown field `password`")
        );
        assert!(err("  webhook: {url: \"ftp://h/x\"}\n").contains("http:// or https://"));
        assert!(err("  webhook: {url: \"https://u:p@h/x\"}\n").contains("never sits in the URL"));
        assert!(err("  webhook: {url: \"https://h/x\", url_env: H}\n")
            .contains("one of url and url_env"));
        assert!(err("  remind_hours: 2\n").contains("give it an `email:` or a `webhook:`"));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let s = section(&format!(
            "{BASE}jobs:\n\
             - {{id: a, company: c, city: x, site: s, database: a, engine: mysql, frequency: hourly}}\n\
             - {{id: a, company: c, city: x, site: s, database: b, engine: mysql, frequency: hourly}}\n"
        ))
        .unwrap();
        let e = check_jobs(&s.jobs).unwrap_err();
        assert!(e.contains("monitor.jobs[1]: id `a`"), "{e}");
    }

    #[test]
    fn command_line_times() {
        assert_eq!(
            parse_utc("2026-12-06T10:00:00Z").unwrap().to_rfc3339(),
            "2026-12-06T10:00:00+00:00"
        );
        assert_eq!(
            parse_utc("2026-12-06 10:00").unwrap(),
            parse_utc("2026-12-06T10:00:00+00:00").unwrap()
        );
        assert!(parse_utc("tomorrow").is_none());
    }
}
