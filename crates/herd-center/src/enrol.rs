//! Enrolment: a terminal trades an enrolment token and a certificate signing request for its
//! client certificate; placement rules choose its group from what it reports and the address
//! it enrols from. The store consumes the token and inserts the terminal in one transaction.
//! The token is looked up first, with one read that does not take the store's writer, so an
//! enrolment with a bogus token costs neither the CA's signature nor a write.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use herd_core::check_identifier;
use herd_proto::api::{EnrolRequest, EnrolResponse, PlacementRule};
use herd_store::{EnrolError, NewTerminal, UNKNOWN_GROUP};

use crate::auth::{new_secret, secret_hash};
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::placement::{self, Candidate};
use crate::{Center, unix_now};

impl Center {
    /// Enrols a terminal enrolling from `address`; refusals are counted.
    pub async fn enrol(
        &self,
        request: EnrolRequest,
        address: IpAddr,
    ) -> CenterResult<EnrolResponse> {
        let result = if self.site().is_some() {
            self.site_relay_enrol(request, address).await
        } else {
            self.enrol_terminal(request, address, None).await
        };
        match &result {
            Ok(_) => self.metrics.enrolments.fetch_add(1, Relaxed),
            Err(_) => self.metrics.enrolments_refused.fetch_add(1, Relaxed),
        };
        result
    }

    /// Enrols a terminal; `site` is the site server that relayed the enrolment, if one did.
    pub(crate) async fn enrol_terminal(
        &self,
        request: EnrolRequest,
        address: IpAddr,
        site: Option<&str>,
    ) -> CenterResult<EnrolResponse> {
        if let Some(id) = &request.id {
            check_identifier(id).map_err(|message| {
                CenterError::bad_request(format!("the enrolment request: $.id: {message}"))
            })?;
        }
        for (path, value) in [
            ("$.hardware.kind", &request.hardware.kind),
            ("$.hardware.platform", &request.hardware.platform),
        ] {
            check_identifier(value).map_err(|message| {
                CenterError::bad_request(format!("the enrolment request: {path}: {message}"))
            })?;
        }
        if let Some(tz) = &request.tz {
            herd_core::TzOffset::parse(tz).map_err(|message| {
                CenterError::bad_request(format!("the enrolment request: $.tz: {message}"))
            })?;
        }
        // Refused here, a bogus token has cost one indexed read. The use is still taken, and
        // checked again, atomically in `store.enrol`: this look-up only refuses early.
        let token_hash = secret_hash(&request.token);
        let now = unix_now();
        let reenrol = match self.store.enrol_token_find(&token_hash).await? {
            None => return Err(EnrolError::TokenUnknown.into()),
            Some(token) if token.expires_at <= now => return Err(EnrolError::TokenExpired.into()),
            Some(token) if token.uses_left == 0 => return Err(EnrolError::TokenUsedUp.into()),
            Some(token) => token.reenrol_terminal,
        };
        // A re-enrolment token names the terminal; a request naming another is refused before
        // the CA signs anything (and again, atomically, by the store).
        let id = match (reenrol, request.id) {
            (Some(bound), Some(asked)) if bound != asked => {
                return Err(EnrolError::TokenForAnotherTerminal { bound, asked }.into());
            }
            (Some(bound), _) => bound,
            (None, Some(id)) => id,
            (None, None) => format!("t-{}", &secret_hash(&new_secret())[..12]),
        };
        let issued = self
            .ca()
            .sign_terminal_csr(&request.csr_pem, &id, self.config.terminal_cert_days)
            .map_err(|err| CenterError::new(ErrorKind::CsrInvalid, err.to_string()))?;

        let rules: Vec<PlacementRule> = self
            .store
            .rules()
            .await?
            .iter()
            .filter_map(|row| serde_json::from_str(&row.rule).ok())
            .collect();
        let group = placement::place(
            &rules,
            Candidate {
                kind: &request.hardware.kind,
                platform: &request.hardware.platform,
                address,
                user: request.user.as_deref(),
            },
        )
        .unwrap_or(UNKNOWN_GROUP)
        .to_owned();

        let row = self
            .store
            .enrol(
                &token_hash,
                unix_now(),
                NewTerminal {
                    id: id.clone(),
                    user: request.user,
                    hardware: serde_json::to_string(&request.hardware)
                        .expect("hardware serialises"),
                    tz: request.tz,
                    group,
                    cert_sha256: issued.cert_sha256,
                    enrolled_at: unix_now(),
                    address: address.to_string(),
                    site: site.map(str::to_owned),
                },
            )
            .await?;
        // A re-enrolment replaced a certificate this process may have cached.
        self.follow_terminal_changes().await?;
        tracing::info!(terminal = %row.id, group = %row.group, %address, "terminal enrolled");
        Ok(EnrolResponse {
            terminal: row.id,
            certificate_pem: issued.cert_pem,
            ca_pem: self.ca().trust_pem().to_owned(),
            group: row.group,
            checkin_interval_secs: self.next_checkin_secs(),
            // The root the terminal trusts from now on (it came over the TLS connection the
            // enrolment token authenticates: trust on first use, as the CA certificate).
            tuf_root: self.tuf_root_text().await?,
            upstreams: Vec::new(),
        })
    }
}
