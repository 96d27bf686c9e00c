//! Enrolment (SPEC §3.6): once per state directory, the agent makes its own key, sends a
//! certificate request with an enrolment token, and keeps the certificate the center's CA
//! issues — the terminal's identity for mutual TLS from then on. Also what the agent reports
//! about its hardware: flags first, then what it was enrolled with, then what it detects.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use herd_client::{Client, ClientError};
use herd_proto::api::{EnrolRequest, codes};
use herd_proto::terminal::HardwareDoc;
use herd_tls::KeyPairPem;

use super::clock;
use super::durable::{self, PRIVATE_FILE};
use super::state::{AGENT_FORMAT, AgentFile, StatePaths};

/// What the command line says about this terminal (each may be absent).
#[derive(Debug, Clone, Default)]
pub(crate) struct Declared {
    pub id: Option<String>,
    pub user: Option<String>,
    pub kind: Option<String>,
    pub platform: Option<String>,
    pub model: Option<String>,
    pub tz: Option<String>,
}

/// The hardware to report: flags, else what was enrolled, else detected.
pub(crate) fn hardware(declared: &Declared, enrolled: Option<&HardwareDoc>) -> HardwareDoc {
    let detected_model = || {
        std::fs::read_to_string("/sys/class/dmi/id/product_name")
            .ok()
            .map(|m| m.trim().chars().take(64).collect::<String>())
            .filter(|m| !m.is_empty())
    };
    HardwareDoc {
        kind: declared
            .kind
            .clone()
            .or_else(|| enrolled.map(|h| h.kind.clone()))
            .unwrap_or_else(|| "pc".to_owned()),
        platform: declared
            .platform
            .clone()
            .or_else(|| enrolled.map(|h| h.platform.clone()))
            .unwrap_or_else(|| "pc".to_owned()),
        model: declared
            .model
            .clone()
            .or_else(|| enrolled.and_then(|h| h.model.clone()))
            .or_else(detected_model),
    }
}

/// The terminal's UTC offset: the flag, else what was enrolled, else the system's now.
pub(crate) fn tz(declared: &Declared, enrolled: Option<&str>) -> Option<String> {
    declared
        .tz
        .clone()
        .or_else(|| enrolled.map(str::to_owned))
        .or_else(system_offset)
}

/// The system's current UTC offset as `+HH:MM` (`date +%z` knows the zone rules).
fn system_offset() -> Option<String> {
    let output = Command::new("date").arg("+%z").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    // ASCII first: the split below is by bytes, and a locale's `date` may print anything.
    if !text.is_ascii() || text.len() != 5 || !matches!(text.as_bytes()[0], b'+' | b'-') {
        return None;
    }
    let offset = format!("{}:{}", &text[..3], &text[3..]);
    herd_core::TzOffset::parse(&offset).ok().map(|_| offset)
}

/// Reads the identity kept in the state directory.
pub(crate) fn load_identity(paths: &StatePaths) -> Result<KeyPairPem> {
    super::identity::load(paths)
}

/// Why enrolment failed, and whether trying again later may help (the center was
/// unreachable) or not (the token was refused, the state directory is not writable).
#[derive(Debug)]
pub(crate) struct EnrolFailure {
    pub error: anyhow::Error,
    pub retryable: bool,
}

impl From<anyhow::Error> for EnrolFailure {
    fn from(error: anyhow::Error) -> EnrolFailure {
        EnrolFailure {
            error,
            retryable: false,
        }
    }
}

/// Enrols with `token`, keeping key and certificate in `<state>/identity` (0600, directory
/// 0700) and writing `agent.json`. The key is written before the request is sent, so a
/// certificate never exists for a key that was lost.
pub(crate) fn enrol(
    paths: &StatePaths,
    server: &str,
    ca_pem: &str,
    token: &str,
    declared: &Declared,
    prefix: &Path,
) -> Result<AgentFile, EnrolFailure> {
    let hint = declared.id.clone().unwrap_or_else(hostname_hint);
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr(&hint)
        .with_context(|| format!("cannot make a key for terminal {hint:?}"))?;
    durable::create_private_dir(&paths.identity_dir()).with_context(|| {
        format!(
            "cannot create the identity directory {}",
            paths.identity_dir().display()
        )
    })?;
    // A key a crash left half-saved must not linger, even in an owner-only directory.
    herd_fs::remove_stale_temporaries(&paths.identity_dir())
        .context("cannot clean up the identity directory")?;
    herd_fs::write_atomic(&paths.key(), key_pem.as_bytes(), PRIVATE_FILE)
        .context("cannot save the terminal's private key")?;
    // A renewal's new pair a crash left behind must not overwrite the new key.
    let _ = std::fs::remove_file(paths.identity_pending());

    let hardware = hardware(declared, None);
    let tz = tz(declared, None);
    let request = EnrolRequest {
        token: token.trim().to_owned(),
        csr_pem,
        id: declared.id.clone(),
        user: declared.user.clone(),
        hardware: hardware.clone(),
        tz: tz.clone(),
    };
    let enrolled = enrol_with(paths, server, ca_pem, &request, key_pem, "enrol")?;
    let agent = AgentFile {
        format: AGENT_FORMAT.to_owned(),
        server: enrolled.server,
        terminal: enrolled.terminal,
        group: enrolled.group,
        user: declared.user.clone(),
        hardware,
        tz,
        prefix: prefix.to_owned(),
        enrolled_at: clock::now_rfc3339(),
        upstreams: enrolled.upstreams,
    };
    super::state::save_json(&paths.agent(), &agent)?;
    Ok(agent)
}

/// Enrols an enrolled terminal again with a re-enrolment token, keeping its id: a new key and
/// certificate replace the old ones (as one pair: see `identity`). The old identity stays until
/// the center has answered, so a refused token changes nothing here either.
pub(crate) fn reenrol(
    paths: &StatePaths,
    agent: &AgentFile,
    ca_pem: &str,
    token: &str,
) -> Result<AgentFile, EnrolFailure> {
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr(&agent.terminal)
        .with_context(|| format!("cannot make a key for terminal {:?}", agent.terminal))?;
    let request = EnrolRequest {
        token: token.trim().to_owned(),
        csr_pem,
        id: Some(agent.terminal.clone()),
        user: agent.user.clone(),
        hardware: agent.hardware.clone(),
        tz: agent.tz.clone(),
    };
    let enrolled = enrol_with(paths, &agent.server, ca_pem, &request, key_pem, "re-enrol")?;
    let agent = AgentFile {
        group: enrolled.group,
        upstreams: enrolled.upstreams,
        ..agent.clone()
    };
    super::state::save_json(&paths.agent(), &agent)?;
    Ok(agent)
}

/// Who the center enrolled this terminal as.
struct Enrolled {
    terminal: String,
    group: String,
    server: String,
    /// Where to check in, in order of preference (empty: `server`).
    upstreams: Vec<String>,
}

/// Sends `request` (its CSR made from `key_pem`) to the center at `server`, trusting `ca_pem`,
/// and keeps the certificate it answers with, with `key_pem`, as the terminal's identity. When
/// the request names the terminal, an answer for another terminal is refused and kept nowhere.
fn enrol_with(
    paths: &StatePaths,
    server: &str,
    ca_pem: &str,
    request: &EnrolRequest,
    key_pem: String,
    doing: &str,
) -> Result<Enrolled, EnrolFailure> {
    let client = Client::new(server, ca_pem, None).map_err(|e| anyhow!("{e}"))?;
    let response = client.enrol(request).map_err(|err| EnrolFailure {
        retryable: err.is_retryable(),
        error: explain(err, doing, client.server()),
    })?;
    if let Some(asked) = &request.id
        && response.terminal != *asked
    {
        return Err(anyhow!(
            "the center enrolled this terminal as {:?}, not {asked:?}; its identity was not kept",
            response.terminal
        )
        .into());
    }
    super::identity::save_pair(
        paths,
        &KeyPairPem {
            cert_pem: response.certificate_pem,
            key_pem,
        },
        &response.ca_pem,
    )?;
    if let Some(root) = &response.tuf_root {
        keep_tuf_root(paths, root)?;
    }
    Ok(Enrolled {
        terminal: response.terminal,
        group: response.group,
        server: client.server().to_owned(),
        upstreams: response.upstreams,
    })
}

/// Keeps the center's TUF root from the enrolment answer as the terminal's root of trust for
/// signed distribution, unless one is already trusted (a re-enrolment keeps the newer root it
/// walked to). It must be signed by a threshold of its own keys; expiry is checked at refresh.
fn keep_tuf_root(paths: &StatePaths, root: &str) -> Result<()> {
    let store = crate::trust::TrustStore::new(&paths.root);
    if store.has_root()? {
        return Ok(());
    }
    let now =
        herd_core::Timestamp::from_unix_seconds(clock::unix_seconds(std::time::SystemTime::now()));
    herd_tuf::TrustedSet::new(root.as_bytes(), now)
        .map_err(|e| anyhow!("the center's TUF root from enrolment is refused: {e}"))?;
    store.save("root", root.as_bytes())?;
    Ok(())
}

/// A CSR subject hint from the host name (the center decides the identity it certifies).
fn hostname_hint() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cleaned: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if herd_tls::is_valid_terminal_id(&cleaned) {
        cleaned
    } else {
        "terminal".to_owned()
    }
}

/// A client error turned into a message that says what to do about it.
pub(crate) fn explain(err: ClientError, doing: &str, server: &str) -> anyhow::Error {
    let hint = match &err {
        ClientError::Certificate { .. } => {
            " (is --ca the center's CA certificate, its <data-dir>/ca.pem?)"
        }
        ClientError::Unreachable { .. } => " (is the center running, and is --server right?)",
        ClientError::Refused { code, .. } if code == codes::ENROL_TOKEN_INVALID => {
            " (ask your operator for a new enrolment token)"
        }
        ClientError::Refused { code, .. } if code == codes::TERMINAL_EXISTS => {
            " (a terminal with this id is already enrolled: choose another --id, or ask your \
             operator to delete the old one)"
        }
        _ => "",
    };
    match err {
        ClientError::Refused { status, .. } => {
            anyhow!(
                "the center at {server} refused to {doing} this terminal (HTTP {status}): {err}{hint}"
            )
        }
        ClientError::Unreachable { .. } | ClientError::Certificate { .. } => {
            anyhow!("{err}{hint}")
        }
        _ => anyhow!("cannot {doing} this terminal with the center at {server}: {err}{hint}"),
    }
}

/// Reads the enrolment token from the flag or the file.
pub(crate) fn token(inline: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    match (inline, file) {
        (Some(token), _) => Ok(Some(token.trim().to_owned())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the enrolment token {}", path.display()))?;
            let token = text.trim();
            if token.is_empty() {
                bail!("the enrolment token file {} is empty", path.display());
            }
            Ok(Some(token.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_root(threshold: usize) -> String {
        use herd_tuf::SigningKey;
        let keys: Vec<SigningKey> = (0..threshold.max(1))
            .map(|_| SigningKey::generate().unwrap())
            .collect();
        let online = SigningKey::generate().unwrap().public();
        let root = herd_tuf::repository::root_document(
            None,
            &keys.iter().map(SigningKey::public).collect::<Vec<_>>(),
            threshold as u32,
            [&online, &online, &online],
            herd_core::Timestamp::parse("2099-01-01T00:00:00Z").unwrap(),
        );
        // Signed by the first key only: a threshold of 2 is not met.
        String::from_utf8(herd_tuf::sign(&root, &[&keys[0]])).unwrap()
    }

    #[test]
    fn the_enrolment_answers_root_becomes_the_root_of_trust_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path());
        let store = crate::trust::TrustStore::new(dir.path());
        let under_signed = signed_root(2);
        let err = keep_tuf_root(&paths, &under_signed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TUF root from enrolment is refused"), "{err}");
        assert!(!store.has_root().unwrap());

        let first = signed_root(1);
        keep_tuf_root(&paths, &first).unwrap();
        assert_eq!(store.load("root").unwrap().unwrap(), first.as_bytes());
        // A re-enrolment keeps the root the terminal already trusts (it may have walked on).
        keep_tuf_root(&paths, &signed_root(1)).unwrap();
        assert_eq!(store.load("root").unwrap().unwrap(), first.as_bytes());
    }

    #[test]
    fn flags_win_over_what_was_enrolled_which_wins_over_detection() {
        let enrolled = HardwareDoc {
            kind: "phone".into(),
            platform: "phone".into(),
            model: Some("p-1".into()),
        };
        let declared = Declared {
            platform: Some("pda".into()),
            ..Declared::default()
        };
        let hw = hardware(&declared, Some(&enrolled));
        assert_eq!(
            (hw.kind.as_str(), hw.platform.as_str(), hw.model.as_deref()),
            ("phone", "pda", Some("p-1"))
        );
        let fresh = hardware(&Declared::default(), None);
        assert_eq!((fresh.kind.as_str(), fresh.platform.as_str()), ("pc", "pc"));
        let declared = Declared {
            tz: Some("+09:00".into()),
            ..Declared::default()
        };
        assert_eq!(tz(&declared, Some("-05:00")).as_deref(), Some("+09:00"));
        assert_eq!(
            tz(&Declared::default(), Some("-05:00")).as_deref(),
            Some("-05:00")
        );
        if let Some(offset) = tz(&Declared::default(), None) {
            herd_core::TzOffset::parse(&offset).unwrap();
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let err = explain(
            ClientError::Refused {
                status: 403,
                code: codes::ENROL_TOKEN_INVALID.into(),
                message: "the enrolment token is unknown, expired or used up".into(),
                problems: vec![],
            },
            "enrol",
            "https://127.0.0.1:8443",
        )
        .to_string();
        assert!(
            err.starts_with("the center at https://127.0.0.1:8443 refused to enrol this terminal (HTTP 403): enrolment_token_invalid:"),
            "{err}"
        );
        assert!(err.contains("new enrolment token"), "{err}");
        let err = explain(
            ClientError::Certificate {
                server: "https://127.0.0.1:1".into(),
                detail: "invalid peer certificate: UnknownIssuer".into(),
            },
            "check in",
            "https://127.0.0.1:1",
        )
        .to_string();
        assert!(err.contains("is --ca the center's CA certificate"), "{err}");
    }

    #[test]
    fn tokens_come_from_the_flag_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "herd_enrol_abc\n").unwrap();
        assert_eq!(
            token(None, Some(&file)).unwrap().as_deref(),
            Some("herd_enrol_abc")
        );
        assert_eq!(token(Some(" t "), None).unwrap().as_deref(), Some("t"));
        assert_eq!(token(None, None).unwrap(), None);
        std::fs::write(&file, "\n").unwrap();
        assert!(
            token(None, Some(&file))
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
    }
}
