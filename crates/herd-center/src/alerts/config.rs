//! The `[alerts]` table of the center's configuration: channels (webhook, e-mail, SMS
//! gateway), rules (which kinds of alert go to which channels), throttling and retries. Read
//! as written ([`AlertsFile`], unknown keys refused by name), then checked into
//! [`AlertsConfig`]; every error names the key, and the channel or rule it belongs to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::AlertKind;
use super::throttle::Limits;

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    pub window_secs: Option<i64>,
    pub burst: Option<u32>,
    pub retry_base_secs: Option<u64>,
    pub retry_max_secs: Option<u64>,
    pub max_attempts: Option<u32>,
    pub exposed_threshold: Option<u64>,
    pub site_queue_threshold: Option<u64>,
    pub consent_channel: Option<String>,
    pub consent_link_secs: Option<u64>,
    #[serde(default)]
    pub channels: Vec<ChannelFile>,
    #[serde(default)]
    pub rules: Vec<RuleFile>,
}

/// One `[[alerts.channels]]` as written: the keys of every type, checked per type.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_tls: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password_file: Option<PathBuf>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub method: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// One `[[alerts.rules]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub name: String,
    pub kinds: Vec<String>,
    pub channels: Vec<String>,
    #[serde(default)]
    pub events: Vec<String>,
}

/// The checked `[alerts]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    pub limits: Limits,
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    pub max_attempts: u32,
    pub exposed_threshold: u64,
    pub site_queue_threshold: u64,
    /// The e-mail channel consent notices go out through (`crate::consent`), if any.
    pub consent_channel: Option<String>,
    /// How long a consent notice's links work, in seconds.
    pub consent_link_secs: u64,
    pub channels: Vec<Channel>,
    pub rules: Vec<Rule>,
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig::from_file(AlertsFile::default()).expect("the defaults are valid")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub target: Target,
}

/// Where a channel delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Webhook { url: String, ca_pem: Option<String> },
    Email(Email),
    Sms(Sms),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    pub ca_pem: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS, required: a server that does not offer it gets nothing.
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// Plaintext, for a relay on loopback only.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sms {
    pub url: String,
    pub method: String,
    pub content_type: Option<String>,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub ca_pem: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub kinds: Vec<AlertKind>,
    /// Indices into [`AlertsConfig::channels`].
    pub channels: Vec<usize>,
    /// Terminal event kinds that raise `terminal_event`.
    pub events: Vec<String>,
}

impl AlertsConfig {
    pub fn from_file(file: AlertsFile) -> anyhow::Result<AlertsConfig> {
        let window_secs = file.window_secs.unwrap_or(300);
        if !(1..=86_400).contains(&window_secs) {
            bail!("alerts.window_secs: {window_secs} is outside 1..=86400");
        }
        let retry_base_secs = file.retry_base_secs.unwrap_or(10);
        let retry_max_secs = file.retry_max_secs.unwrap_or(3600);
        if retry_base_secs == 0 || retry_base_secs > retry_max_secs {
            bail!(
                "alerts.retry_base_secs: {retry_base_secs} must be at least 1 and at most \
                 retry_max_secs ({retry_max_secs})"
            );
        }
        let max_attempts = file.max_attempts.unwrap_or(20);
        if max_attempts == 0 {
            bail!("alerts.max_attempts: must be at least 1");
        }
        let mut channels: Vec<Channel> = Vec::with_capacity(file.channels.len());
        for (i, channel) in file.channels.into_iter().enumerate() {
            let checked =
                check_channel(channel).with_context(|| format!("alerts.channels[{i}]"))?;
            if channels.iter().any(|c| c.name == checked.name) {
                bail!(
                    "alerts.channels[{i}].name: {:?} names two channels",
                    checked.name
                );
            }
            channels.push(checked);
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, rule) in file.rules.into_iter().enumerate() {
            let at = format!("alerts.rules[{i}]");
            check_name(&rule.name).with_context(|| format!("{at}.name"))?;
            if rule.kinds.is_empty() {
                bail!("{at}.kinds: name at least one kind of alert");
            }
            let mut kinds = Vec::with_capacity(rule.kinds.len());
            for kind in &rule.kinds {
                kinds.push(AlertKind::parse(kind).with_context(|| format!("{at}.kinds"))?);
            }
            if rule.channels.is_empty() {
                bail!("{at}.channels: name at least one channel");
            }
            let mut indices = Vec::with_capacity(rule.channels.len());
            for name in &rule.channels {
                let Some(index) = channels.iter().position(|c| &c.name == name) else {
                    bail!("{at}.channels: {name:?} is not a channel in [[alerts.channels]]");
                };
                indices.push(index);
            }
            if !rule.events.is_empty() && !kinds.contains(&AlertKind::TerminalEvent) {
                bail!("{at}.events: events are matched only with the kind \"terminal_event\"");
            }
            rules.push(Rule {
                name: rule.name,
                kinds,
                channels: indices,
                events: rule.events,
            });
        }
        let consent_channel = match file.consent_channel.filter(|name| !name.is_empty()) {
            None => None,
            Some(name) => match channels.iter().find(|c| c.name == name) {
                Some(Channel {
                    target: Target::Email(_),
                    ..
                }) => Some(name),
                Some(_) => bail!(
                    "alerts.consent_channel: {name:?} is not an e-mail channel (type = \"email\")"
                ),
                None => bail!(
                    "alerts.consent_channel: {name:?} is not a channel in [[alerts.channels]]"
                ),
            },
        };
        let consent_link_secs = file.consent_link_secs.unwrap_or(3 * 86_400);
        if !(1..=30 * 86_400).contains(&consent_link_secs) {
            bail!("alerts.consent_link_secs: {consent_link_secs} is outside 1..=2592000 (30 days)");
        }
        Ok(AlertsConfig {
            consent_channel,
            consent_link_secs,
            limits: Limits {
                window_secs,
                burst: file.burst.unwrap_or(5),
            },
            retry_base_secs,
            retry_max_secs,
            max_attempts,
            exposed_threshold: file.exposed_threshold.unwrap_or(0),
            site_queue_threshold: file.site_queue_threshold.unwrap_or(10_000),
            channels,
            rules,
        })
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Seconds to wait after failed attempt number `attempts` (1 for the first).
    pub fn backoff_secs(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(32);
        self.retry_base_secs
            .saturating_mul(1u64 << doublings)
            .min(self.retry_max_secs)
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        bail!("{name:?} is not a name (1-64 of a-z, A-Z, 0-9, '.', '_', '-')");
    }
    Ok(())
}

fn read_ca(path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    match path.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        None => Ok(None),
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("ca_file: cannot read {}", path.display()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                bail!("ca_file: {} holds no PEM certificate", path.display());
            }
            Ok(Some(pem))
        }
    }
}

fn check_channel(file: ChannelFile) -> anyhow::Result<Channel> {
    check_name(&file.name).context("name")?;
    // Keys of another type are refused by name, not ignored: a misplaced key is a mistake.
    let present: Vec<(&str, bool)> = vec![
        ("url", file.url.is_some()),
        ("smtp_host", file.smtp_host.is_some()),
        ("smtp_port", file.smtp_port.is_some()),
        ("smtp_tls", file.smtp_tls.is_some()),
        ("smtp_username", file.smtp_username.is_some()),
        ("smtp_password_file", file.smtp_password_file.is_some()),
        ("from", file.from.is_some()),
        ("to", file.to.is_some()),
        ("method", file.method.is_some()),
        ("content_type", file.content_type.is_some()),
        ("body", file.body.is_some()),
        ("headers", file.headers.is_some()),
    ];
    let allowed: &[&str] = match file.kind.as_str() {
        "webhook" => &["url"],
        "sms" => &["url", "method", "content_type", "body", "headers"],
        "email" => &[
            "smtp_host",
            "smtp_port",
            "smtp_tls",
            "smtp_username",
            "smtp_password_file",
            "from",
            "to",
        ],
        other => bail!("type: {other:?} is none of \"webhook\", \"email\", \"sms\""),
    };
    if let Some((key, _)) = present
        .iter()
        .find(|(key, set)| *set && !allowed.contains(key))
    {
        bail!("{key}: not a key of a {} channel", file.kind);
    }
    let ca_pem = read_ca(&file.ca_file)?;
    let target = match file.kind.as_str() {
        "webhook" => {
            let url = file.url.unwrap_or_default();
            herd_client::web::check_url(&url).context("url")?;
            Target::Webhook { url, ca_pem }
        }
        "sms" => {
            let url = file.url.unwrap_or_default();
            // Checked with the placeholders filled, as it will be sent.
            herd_client::web::check_url(&url.replace(['{', '}'], "")).context("url")?;
            let method = file.method.unwrap_or_else(|| "POST".to_owned());
            if !["GET", "POST", "PUT"].contains(&method.as_str()) {
                bail!("method: {method:?} is none of GET, POST, PUT");
            }
            let headers: Vec<(String, String)> =
                file.headers.unwrap_or_default().into_iter().collect();
            for (name, value) in &headers {
                let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty()
                    || !name.bytes().all(token)
                    || !value
                        .bytes()
                        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                {
                    bail!("headers: {name:?} is not a header name and value");
                }
            }
            Target::Sms(Sms {
                url,
                method,
                content_type: file.content_type.filter(|c| !c.is_empty()),
                body: file.body.unwrap_or_default(),
                headers,
                ca_pem,
            })
        }
        _ => {
            let host = file.smtp_host.unwrap_or_default();
            if host.is_empty() {
                bail!("smtp_host: name the SMTP server");
            }
            let tls = match file.smtp_tls.as_deref().unwrap_or("starttls") {
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Implicit,
                "none" => SmtpTls::None,
                other => bail!("smtp_tls: {other:?} is none of \"starttls\", \"tls\", \"none\""),
            };
            if tls == SmtpTls::None && !is_loopback(&host) {
                bail!(
                    "smtp_tls: \"none\" sends alerts and the password in clear; it is allowed \
                     for a relay on loopback only, not {host:?}"
                );
            }
            let port = file.smtp_port.unwrap_or(match tls {
                SmtpTls::Implicit => 465,
                _ => 587,
            });
            let credentials = match (file.smtp_username, file.smtp_password_file) {
                (None, None) => None,
                (Some(user), Some(path)) => {
                    let password = std::fs::read_to_string(&path).with_context(|| {
                        format!("smtp_password_file: cannot read {}", path.display())
                    })?;
                    Some((user, password.trim_end_matches(['\r', '\n']).to_owned()))
                }
                (Some(_), None) => bail!("smtp_password_file: needed with smtp_username"),
                (None, Some(_)) => bail!("smtp_username: needed with smtp_password_file"),
            };
            let from = file.from.unwrap_or_default();
            check_address(&from).context("from")?;
            let to = file.to.unwrap_or_default();
            if to.is_empty() {
                bail!("to: name at least one recipient");
            }
            for address in &to {
                check_address(address).context("to")?;
            }
            Target::Email(Email {
                host,
                port,
                tls,
                credentials,
                from,
                to,
                ca_pem,
            })
        }
    };
    Ok(Channel {
        name: file.name,
        target,
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An e-mail address as lettre accepts it.
pub fn check_address(address: &str) -> anyhow::Result<()> {
    address
        .parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|err| anyhow::anyhow!("{address:?} is not an e-mail address: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<AlertsConfig> {
        #[derive(Deserialize)]
        struct Wrapper {
            alerts: AlertsFile,
        }
        let wrapper: Wrapper = toml::from_str(text)?;
        AlertsConfig::from_file(wrapper.alerts)
    }

    #[test]
    fn the_documented_defaults_parse() {
        let config = parse(crate::config::DEFAULT_CONFIG).unwrap();
        assert_eq!(config, AlertsConfig::default());
        assert_eq!(config.limits.burst, 5);
        assert_eq!(config.backoff_secs(1), 10);
        assert_eq!(config.backoff_secs(3), 40);
        assert_eq!(config.backoff_secs(40), 3600);
    }

    #[test]
    fn channels_and_rules_are_checked_naming_the_key() {
        let good = r#"
[alerts]
[[alerts.channels]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[alerts.channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_tls = "none"
from = "herd@example.org"
to = ["a@example.org"]
[[alerts.rules]]
name = "all"
kinds = ["detection", "terminal_event"]
channels = ["ops", "mail"]
events = ["trust.refused"]
"#;
        let config = parse(good).unwrap();
        assert_eq!(config.rules[0].channels, vec![0, 1]);
        assert_eq!(config.consent_channel, None);
        let consent =
            parse(&good.replace("[alerts]\n", "[alerts]\nconsent_channel = \"mail\"\n")).unwrap();
        assert_eq!(consent.consent_channel.as_deref(), Some("mail"));
        assert_eq!(consent.consent_link_secs, 3 * 86_400);
        for (bad, expected) in [
            (
                good.replace("type = \"webhook\"", "type = \"pager\""),
                "alerts.channels[0]: type: \"pager\"",
            ),
            (
                good.replace("url = \"http://127.0.0.1:9/hook\"", "url = \"ftp://x/\""),
                "alerts.channels[0]: url:",
            ),
            (
                good.replace("smtp_host = \"127.0.0.1\"", "smtp_host = \"mail.example\""),
                "alerts.channels[1]: smtp_tls: \"none\"",
            ),
            (
                good.replace("to = [\"a@example.org\"]", "to = [\"not an address\"]"),
                "alerts.channels[1]: to:",
            ),
            (
                good.replace("channels = [\"ops\", \"mail\"]", "channels = [\"pager\"]"),
                "alerts.rules[0].channels: \"pager\" is not a channel",
            ),
            (
                good.replace("\"detection\", \"terminal_event\"", "\"explosion\""),
                "alerts.rules[0].kinds",
            ),
            (
                good.replace("\"detection\", \"terminal_event\"", "\"detection\""),
                "alerts.rules[0].events",
            ),
            (
                good.replace("name = \"mail\"", "name = \"ops\""),
                "alerts.channels[1].name: \"ops\" names two channels",
            ),
            (
                good.replace("type = \"webhook\"", "type = \"webhook\"\nsmtp_port = 25"),
                "alerts.channels[0]: smtp_port: not a key of a webhook channel",
            ),
            (
                good.replace("[alerts]\n", "[alerts]\nconsent_channel = \"ops\"\n"),
                "alerts.consent_channel: \"ops\" is not an e-mail channel",
            ),
            (
                good.replace("[alerts]\n", "[alerts]\nconsent_channel = \"post\"\n"),
                "alerts.consent_channel: \"post\" is not a channel",
            ),
            (
                good.replace(
                    "[alerts]\n",
                    "[alerts]\nconsent_channel = \"mail\"\nconsent_link_secs = 0\n",
                ),
                "alerts.consent_link_secs: 0 is outside",
            ),
        ] {
            let err = format!("{:#}", parse(&bad).unwrap_err());
            assert!(err.starts_with(expected), "{expected}\n{err}");
        }
        let unknown = format!("{:#}", parse("[alerts]\nburts = 3\n").unwrap_err());
        assert!(unknown.contains("burts"), "{unknown}");
    }
}
