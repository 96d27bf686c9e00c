//! The site tier's calls (`herd_proto::site`): a site enrolling, pulling, replicating and
//! relaying, the center pushing to a site, and operators listing sites and making site tokens.

use std::time::Duration;

use herd_proto::api::{CertificateRenewed, EnrolResponse, TokenCreated};
use herd_proto::site::{
    self as wire, CatalogInputs, GroupInputs, RelayAck, RelayBatch, RelayedEnrol, RelayedRenewal,
    SiteChanges, SiteEnrolRequest, SiteEnrolResponse, SiteRenewRequest, SiteRenewed, SiteStatus,
    SiteSummary, SiteTerminal,
};
use ureq::http::Method;

use crate::{Client, ClientError, MAX_CATALOG_ANSWER, MAX_JSON_ANSWER, Payload, segment};

impl Client {
    /// Enrols a site with a site enrolment token (`POST /v1/sites/enrol`).
    pub fn enrol_site(&self, request: &SiteEnrolRequest) -> Result<SiteEnrolResponse, ClientError> {
        self.send_json(Method::POST, wire::SITE_ENROL, request)
    }

    /// The site's own certificate renewed (`POST /v1/sites/renew`), called with its current
    /// certificate or the one it renewed from last.
    pub fn renew_site(&self, request: &SiteRenewRequest) -> Result<SiteRenewed, ClientError> {
        self.send_json(Method::POST, wire::SITE_RENEW, request)
    }

    /// Asks site `id` to renew its certificate at its next pull (`POST /v1/sites/{id}/renewal`).
    pub fn request_site_renewal(&self, id: &str) -> Result<(), ClientError> {
        self.post_empty(&format!("{}/{}/renewal", wire::SITES, segment(id)))
    }

    /// The site's pull (`GET /v1/sites/changes`): held by the center until its change token
    /// differs from `after` or `hold` passes; `status` is what the site says of itself.
    pub fn site_changes(
        &self,
        after: Option<&str>,
        hold: Duration,
        status: &SiteStatus,
    ) -> Result<SiteChanges, ClientError> {
        let hold_secs = hold.as_secs().to_string();
        let numbers = [
            status.queue_depth.to_string(),
            status.queue_oldest_secs.to_string(),
            status.cache_bytes.to_string(),
            status.cache_limit_bytes.to_string(),
            status.terminals.to_string(),
        ];
        let mut query = vec![
            ("timeout_secs", hold_secs.as_str()),
            ("queue_depth", numbers[0].as_str()),
            ("queue_oldest_secs", numbers[1].as_str()),
            ("cache_bytes", numbers[2].as_str()),
            ("cache_limit_bytes", numbers[3].as_str()),
            ("terminals", numbers[4].as_str()),
        ];
        if let Some(after) = after {
            query.push(("after", after));
        }
        self.get_json_held(wire::SITE_CHANGES, &query, hold)
    }

    /// What the site's planner merges (`GET /v1/sites/catalog`).
    pub fn site_catalog(&self) -> Result<CatalogInputs, ClientError> {
        self.get_json(wire::SITE_CATALOG, &[], MAX_CATALOG_ANSWER)
    }

    /// The center's rollout rings and states (`GET /v1/sites/rollouts`).
    pub fn site_rollouts(&self) -> Result<herd_proto::site::SiteRollouts, ClientError> {
        self.get_json(wire::SITE_ROLLOUTS, &[], MAX_CATALOG_ANSWER)
    }

    /// The messages for the site's terminals after id `after`, oldest first, at most 500
    /// (`GET /v1/sites/messages`).
    pub fn site_messages(
        &self,
        after: u64,
    ) -> Result<herd_proto::messages::MessageList, ClientError> {
        let after = after.to_string();
        self.get_json(wire::SITE_MESSAGES, &[("after", &after)], MAX_JSON_ANSWER)
    }

    /// Groups and placement rules (`GET /v1/sites/groups`).
    pub fn site_groups(&self) -> Result<GroupInputs, ClientError> {
        self.get_json(wire::SITE_GROUPS, &[], MAX_JSON_ANSWER)
    }

    /// A terminal's enrolment, relayed (`POST /v1/sites/terminals/enrol`).
    pub fn relay_enrol(&self, relayed: &RelayedEnrol) -> Result<EnrolResponse, ClientError> {
        self.send_json(Method::POST, wire::SITE_TERMINAL_ENROL, relayed)
    }

    /// A terminal's renewal, relayed (`POST /v1/sites/terminals/renew`).
    pub fn relay_renew(&self, relayed: &RelayedRenewal) -> Result<CertificateRenewed, ClientError> {
        self.send_json(Method::POST, wire::SITE_TERMINAL_RENEW, relayed)
    }

    /// A terminal the site does not know, which presented it the certificate whose SHA-256
    /// is `cert_sha256` (`GET /v1/sites/terminals/{id}`).
    pub fn site_terminal(&self, id: &str, cert_sha256: &str) -> Result<SiteTerminal, ClientError> {
        let path = format!("{}/{}", wire::SITE_TERMINALS, segment(id));
        self.get_json(&path, &[("cert_sha256", cert_sha256)], MAX_JSON_ANSWER)
    }

    /// The fault verdicts of a terminal the site serves
    /// (`GET /v1/sites/terminals/{id}/fault-verdicts`).
    pub fn site_fault_verdicts(
        &self,
        id: &str,
    ) -> Result<herd_proto::fault::FaultVerdicts, ClientError> {
        let path = format!("{}/{}/fault-verdicts", wire::SITE_TERMINALS, segment(id));
        // Held verdicts too: the site hands them on to the terminals that ask for them.
        self.get_json(&path, &[("held", "true")], MAX_JSON_ANSWER)
    }

    /// The e-mailed consent answer of a terminal the site serves, for plan `plan_id`.
    pub fn site_consent(
        &self,
        id: &str,
        plan_id: &str,
    ) -> Result<herd_proto::consent::SiteConsent, ClientError> {
        let path = format!("{}/{}/consent", wire::SITE_TERMINALS, segment(id));
        self.get_json(&path, &[("plan_id", plan_id)], MAX_JSON_ANSWER)
    }

    /// Whether the center has a sample (`GET /v1/sites/samples/{sha256}`).
    pub fn site_sample_held(
        &self,
        sha256: &str,
    ) -> Result<herd_proto::api::SamplePresence, ClientError> {
        let path = format!("/v1/sites/samples/{}", segment(sha256));
        self.get_json(&path, &[], MAX_JSON_ANSWER)
    }

    /// A batch of the site's queue (`POST /v1/sites/relay`).
    pub fn relay(&self, batch: &RelayBatch) -> Result<RelayAck, ClientError> {
        self.send_json(Method::POST, wire::SITE_RELAY, batch)
    }

    /// The center's push to a site (`POST /v1/site/notify`, center certificate).
    pub fn site_notify(&self, changes: &SiteChanges) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec(changes).map_err(|err| {
            ClientError::Invalid(format!("cannot encode the notification: {err}"))
        })?;
        let response = self.call(
            Method::POST,
            wire::SITE_NOTIFY,
            &[],
            Payload::Json(bytes),
            false,
        )?;
        self.drain(response, "POST /v1/site/notify")
    }

    /// A site enrolment token (`POST /v1/site-tokens`, operator).
    pub fn new_site_token(&self, label: &str) -> Result<TokenCreated, ClientError> {
        self.send_json(
            Method::POST,
            wire::SITE_TOKENS,
            &serde_json::json!({ "label": label }),
        )
    }

    /// Every site (`GET /v1/sites`, operator).
    pub fn sites(&self) -> Result<Vec<SiteSummary>, ClientError> {
        self.get_json(wire::SITES, &[], MAX_JSON_ANSWER)
    }
}
