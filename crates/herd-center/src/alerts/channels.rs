//! Sending one alert to one channel: a webhook (a POST of JSON whose `text` is what Slack and
//! compatible chat services show), an e-mail (SMTP through lettre: STARTTLS required unless
//! configured otherwise, over rustls with ring), an SMS gateway (an HTTP request made from the
//! channel's URL and body templates). Blocking: the worker runs each in a blocking task.

use std::time::Duration;

use herd_client::web::{WebClient, WebRequest};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::config::{Email, Sms, SmtpTls, Target};

/// How long one delivery may take, connection to answer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a sink's answer read (its error text is kept with the delivery).
const MAX_ANSWER_BYTES: u64 = 64 << 10;
/// The most of a sink's answer quoted in an error.
const QUOTED_ANSWER: usize = 200;

/// What is sent: the text a person reads, its subject line, and the JSON a webhook receives.
#[derive(Clone, Debug)]
pub struct Outgoing<'a> {
    pub kind: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub payload: &'a str,
    /// For an e-mail channel: the one address to send to instead of the channel's `to`.
    pub recipient: Option<&'a str>,
}

/// Sends `outgoing` to `target`; the error says what the sink answered or why none did.
pub fn send(target: &Target, outgoing: &Outgoing<'_>) -> Result<(), String> {
    match target {
        Target::Webhook { url, ca_pem } => {
            let client = WebClient::new(ca_pem.as_deref()).map_err(|e| e.to_string())?;
            answered_ok(
                &client,
                &WebRequest {
                    method: "POST",
                    url,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: outgoing.payload.as_bytes().to_vec(),
                    max_answer_bytes: MAX_ANSWER_BYTES,
                    timeout: SEND_TIMEOUT,
                },
            )
        }
        Target::Sms(sms) => send_sms(sms, outgoing),
        Target::Email(email) => send_email(email, outgoing),
    }
}

fn answered_ok(client: &WebClient, request: &WebRequest<'_>) -> Result<(), String> {
    let answer = client.send(request).map_err(|e| e.to_string())?;
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    let quoted: String = String::from_utf8_lossy(&answer.body)
        .chars()
        .take(QUOTED_ANSWER)
        .collect();
    Err(format!(
        "{} answered {}: {}",
        request.url,
        answer.status,
        quoted.trim()
    ))
}

/// The SMS gateway's request: `{text}`, `{kind}` and `{subject}` in the URL percent-encoded,
/// in the body escaped for its content type.
pub fn sms_request<'a>(sms: &Sms, outgoing: &Outgoing<'_>, url: &'a mut String) -> WebRequest<'a> {
    *url = fill(&sms.url, outgoing, &|value| {
        herd_client::percent_encode(value)
    });
    let content_type = sms.content_type.as_deref().unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = match essence.as_str() {
        "application/json" => fill(&sms.body, outgoing, &|value| {
            let quoted = serde_json::to_string(value).unwrap_or_default();
            quoted[1..quoted.len() - 1].to_owned()
        }),
        "application/x-www-form-urlencoded" => {
            fill(&sms.body, outgoing, &herd_client::percent_encode)
        }
        _ => fill(&sms.body, outgoing, &|value| value.to_owned()),
    };
    let mut headers = sms.headers.clone();
    if !content_type.is_empty() {
        headers.push(("content-type".into(), content_type.to_owned()));
    }
    WebRequest {
        method: match sms.method.as_str() {
            "GET" => "GET",
            "PUT" => "PUT",
            _ => "POST",
        },
        url,
        headers,
        body: body.into_bytes(),
        max_answer_bytes: MAX_ANSWER_BYTES,
        timeout: SEND_TIMEOUT,
    }
}

fn send_sms(sms: &Sms, outgoing: &Outgoing<'_>) -> Result<(), String> {
    let client = WebClient::new(sms.ca_pem.as_deref()).map_err(|e| e.to_string())?;
    let mut url = String::new();
    let request = sms_request(sms, outgoing, &mut url);
    answered_ok(&client, &request)
}

/// `template` with each placeholder replaced by its value, escaped. One pass, so a value that
/// itself contains `{text}` is not expanded again.
fn fill(template: &str, outgoing: &Outgoing<'_>, escape: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + outgoing.text.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let placeholder = [
            ("{text}", outgoing.text),
            ("{kind}", outgoing.kind),
            ("{subject}", outgoing.subject),
        ]
        .into_iter()
        .find(|(name, _)| after.starts_with(name));
        match placeholder {
            Some((name, value)) => {
                out.push_str(&escape(value));
                rest = &after[name.len()..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn send_email(email: &Email, outgoing: &Outgoing<'_>) -> Result<(), String> {
    let mut message = Message::builder()
        .from(
            email
                .from
                .parse()
                .map_err(|e| format!("from {:?}: {e}", email.from))?,
        )
        .subject(format!("[herd] {}: {}", outgoing.kind, outgoing.subject))
        .header(ContentType::TEXT_PLAIN);
    let recipients: Vec<&str> = match outgoing.recipient {
        Some(recipient) => vec![recipient],
        None => email.to.iter().map(String::as_str).collect(),
    };
    for to in recipients {
        message = message.to(to.parse().map_err(|e| format!("to {to:?}: {e}"))?);
    }
    let message = message
        .body(outgoing.text.to_owned())
        .map_err(|e| format!("cannot build the e-mail: {e}"))?;
    let server = format!("{}:{}", email.host, email.port);
    let tls = match email.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls | SmtpTls::Implicit => {
            let mut parameters = TlsParameters::builder(email.host.clone());
            if let Some(pem) = &email.ca_pem {
                let certificate = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| format!("the channel's ca_file: {e}"))?;
                parameters = parameters.add_root_certificate(certificate);
            }
            let parameters = parameters
                .build_rustls()
                .map_err(|e| format!("cannot set up TLS for {server}: {e}"))?;
            match email.tls {
                SmtpTls::Implicit => Tls::Wrapper(parameters),
                _ => Tls::Required(parameters),
            }
        }
    };
    let mut transport = SmtpTransport::builder_dangerous(email.host.as_str())
        .port(email.port)
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if let Some((user, password)) = &email.credentials {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    transport
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| format!("SMTP {server}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing() -> Outgoing<'static> {
        Outgoing {
            kind: "detection",
            subject: "pc-7",
            text: "EICAR \"test\" & {text} on pc-7",
            payload: "{}",
            recipient: None,
        }
    }

    #[test]
    fn sms_templates_escape_each_value_for_where_it_goes() {
        let mut sms = Sms {
            url: "https://sms.example/send?to=%2B81&m={text}&k={kind}".into(),
            method: "POST".into(),
            content_type: Some("application/json".into()),
            body: r#"{"to": "+81", "text": "{text}", "n": {count}}"#.into(),
            headers: vec![("x-api-key".into(), "k".into())],
            ca_pem: None,
        };
        let mut url = String::new();
        let request = sms_request(&sms, &outgoing(), &mut url);
        assert_eq!(
            request.url,
            "https://sms.example/send?to=%2B81&m=EICAR%20%22test%22%20%26%20%7Btext%7D%20on%20pc-7&k=detection"
        );
        assert_eq!(
            String::from_utf8(request.body.clone()).unwrap(),
            r#"{"to": "+81", "text": "EICAR \"test\" & {text} on pc-7", "n": {count}}"#
        );
        assert!(
            request
                .headers
                .contains(&("content-type".into(), "application/json".into()))
        );
        sms.content_type = Some("application/x-www-form-urlencoded".into());
        sms.body = "text={text}".into();
        let request = sms_request(&sms, &outgoing(), &mut url);
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            "text=EICAR%20%22test%22%20%26%20%7Btext%7D%20on%20pc-7"
        );
    }
}
