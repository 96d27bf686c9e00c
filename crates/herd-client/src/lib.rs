//! Blocking HTTPS client for the center's API v1 (`herd_proto::api`): enrolment, check-in,
//! events and package downloads for terminals; feeds and packages for vendors; the fleet,
//! coverage, groups, rules and tokens for operators; signed distribution's metadata, root
//! installation and vendor keys for the key tools (`tuf.rs`).
//!
//! One [`Client`] per process: it holds one ureq agent whose connections are kept alive and
//! reused. It is blocking on purpose, with no async runtime, so the agent stays small when idle.
//! TLS is rustls with the ring provider, trusting only the center's CA certificate; a terminal
//! presents the client certificate it got at enrolment, vendors and operators send
//! `Authorization: Bearer <token>` (see [`Client::with_token`]).
//!
//! Every non-2xx answer becomes [`ClientError::Refused`] with the server's stable code; the
//! other variants say what kind of failure it was (no answer, an answer cut short, bytes that
//! are not what was asked for, …) so callers decide on the kind, never on the wording.

mod alerts;
mod error;
mod faults;
mod feed_sources;
mod messages;
mod repository;
mod rollouts;
mod site;
mod tls;
mod transfer;
mod trust;
mod tuf;
pub mod web;

use std::fmt;
use std::io::{self, Read as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herd_proto::api::{
    BlobCollection, CaInfo, CaInstall, CheckinRequest, CheckinResponse, CoverageMatrix,
    EnrolRequest, EnrolResponse, EventAck, EventBatch, GroupDoc, GroupList, NewApiToken,
    NewEnrolmentToken, PlacementRules, PublishResponse, TerminalDetail, TerminalList,
    TerminalSummary, ThreatList, ThreatOwner, TokenCreated, VendorList,
};
use herd_tls::KeyPairPem;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ureq::http::{self, Method, header};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Connector as _, TcpConnector};
use ureq::{Body, SendBody};

pub use error::ClientError;
pub use repository::{ReadLimits, Repository, RepositoryError};

/// Longest wait for a TCP connection and TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a whole API call may take, from connecting to the end of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Package transfers have no overall deadline (a large package over a slow link takes as long
/// as it takes), but one that makes no progress for this long is abandoned; downloads resume.
pub const TRANSFER_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest JSON answer read into memory (a terminal page, a plan, the coverage matrix).
const MAX_JSON_ANSWER: u64 = 64 << 20;
/// The merged catalog of a large deployment (100,000 threats) is much bigger than other answers.
const MAX_CATALOG_ANSWER: u64 = 1 << 30;
/// Error bodies are short; anything beyond this is not an API error worth reading.
const MAX_ERROR_ANSWER: u64 = 1 << 20;
/// The page size [`Client::all_terminals`] asks for (the most the center serves at once).
const TERMINAL_PAGE: u32 = 1000;

/// A connection to one center (or site server) speaking API v1. Cheap to clone; clones share
/// the connection pool and the TLS configuration, so keep one per process and identity: every
/// new connection then resumes the TLS session of an earlier one.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `https://host:port`, without a trailing slash.
    server: String,
    /// `Bearer <token>` when a token was given.
    authorization: Option<Arc<str>>,
}

impl fmt::Debug for Client {
    /// Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("token", &self.authorization.as_ref().map(|_| "[elided]"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `server` (like `https://127.0.0.1:8443`) that trusts only the
    /// certificates in `ca_pem` (the center's CA) and presents `identity` (a terminal's
    /// certificate and key from enrolment) when given.
    ///
    /// Nothing is sent yet; bad certificates, keys or URLs are reported here, naming which.
    pub fn new(
        server: &str,
        ca_pem: &str,
        identity: Option<&KeyPairPem>,
    ) -> Result<Client, ClientError> {
        let server = normalise_server(server)?;
        // herd-tls checks the PEM material and that the key matches the certificate, with
        // messages naming what is wrong. This one config (and its session cache) serves every
        // connection the client opens, so reconnections resume the TLS session.
        let config = herd_tls::client_config(ca_pem, identity).map_err(|err| {
            ClientError::Invalid(format!("cannot set up TLS for {server}: {err}"))
        })?;
        let connector = ().chain(TcpConnector::default()).chain(tls::TlsConnector { config });
        let config = ureq::Agent::config_builder()
            .https_only(true)
            // Answers are read whatever their status; non-2xx bodies are API errors.
            .http_status_as_error(false)
            // API v1 never redirects; following one could send a token elsewhere.
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("herd-client/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(config, connector, DefaultResolver::default());
        Ok(Client {
            agent,
            server,
            authorization: None,
        })
    }

    /// The same client, sending `Authorization: Bearer <token>` (vendors and operators).
    /// Surrounding whitespace (a token file's newline) is ignored.
    pub fn with_token(self, token: &str) -> Client {
        Client {
            authorization: Some(format!("Bearer {}", token.trim()).into()),
            ..self
        }
    }

    /// The server this client talks to, as normalised (`https://host:port`).
    pub fn server(&self) -> &str {
        &self.server
    }

    // -----------------------------------------------------------------------------------------
    // Public endpoints.

    /// The push connection (`GET /v1/wait`, a terminal's certificate): held by the server until
    /// its change token differs from `after` (`changed`: check in now) or `timeout` passes
    /// (`changed: false`: ask again with the answer's token). A server holding as many waits as
    /// it may answers 503 (`Refused`, `unavailable`): pull for a while before waiting again.
    pub fn wait(
        &self,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<herd_proto::site::WaitResponse, ClientError> {
        let secs = timeout.as_secs().max(1);
        let secs_text = secs.to_string();
        let mut query = vec![("timeout_secs", secs_text.as_str())];
        if let Some(after) = after {
            query.push(("after", after));
        }
        self.get_json_held(herd_proto::site::WAIT, &query, Duration::from_secs(secs))
    }

    /// Succeeds when the center answers `GET /v1/health`.
    pub fn health(&self) -> Result<(), ClientError> {
        let response = self.call(Method::GET, "/v1/health", &[], Payload::None, false)?;
        self.drain(response, "GET /v1/health")
    }

    // -----------------------------------------------------------------------------------------
    // Terminals.

    /// Trades an enrolment token and a CSR for the terminal's client certificate
    /// (`POST /v1/enrol`).
    pub fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, ClientError> {
        self.send_json(Method::POST, "/v1/enrol", request)
    }

    /// Reports the inventory and receives the plan (`POST /v1/checkin`, client certificate).
    pub fn checkin(&self, request: &CheckinRequest) -> Result<CheckinResponse, ClientError> {
        self.send_json(Method::POST, "/v1/checkin", request)
    }

    /// Delivers a batch from the outbox (`POST /v1/events`, client certificate).
    pub fn send_events(&self, batch: &EventBatch) -> Result<EventAck, ClientError> {
        self.send_json(Method::POST, "/v1/events", batch)
    }

    // -----------------------------------------------------------------------------------------
    // Vendors.

    /// Publishes a vendor's whole catalog feed (`PUT /v1/feeds/{vendor}`), sent as given.
    pub fn publish_feed(
        &self,
        vendor: &str,
        feed_json: &[u8],
    ) -> Result<PublishResponse, ClientError> {
        let path = format!("/v1/feeds/{}", segment(vendor));
        let response = self.call(
            Method::PUT,
            &path,
            &[],
            Payload::Json(feed_json.to_vec()),
            false,
        )?;
        self.json(response, &format!("PUT {path}"), MAX_JSON_ANSWER)
    }

    // -----------------------------------------------------------------------------------------
    // Operators.

    /// One page of the fleet, ordered by terminal id (`GET /v1/terminals`). `action` is one of
    /// `none`, `update`, `switch`, `exposed`; `after` is the previous page's `next`; `limit`
    /// is 1 to 1000.
    pub fn terminals(
        &self,
        group: Option<&str>,
        action: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<TerminalList, ClientError> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        for (name, value) in [("group", group), ("action", action), ("after", after)] {
            if let Some(value) = value {
                query.push((name, value));
            }
        }
        self.get_json("/v1/terminals", &query, MAX_JSON_ANSWER)
    }

    /// Every terminal matching the filters, fetching page after page.
    pub fn all_terminals(
        &self,
        group: Option<&str>,
        action: Option<&str>,
    ) -> Result<Vec<TerminalSummary>, ClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.terminals(group, action, after.as_deref(), TERMINAL_PAGE)?;
            all.extend(page.terminals);
            match page.next {
                // A server repeating the same cursor would loop forever.
                Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
                Some(next) => {
                    return Err(ClientError::Corrupt {
                        server: self.server.clone(),
                        what: "GET /v1/terminals".to_owned(),
                        detail: format!("the center returned the cursor {next:?} twice"),
                    });
                }
                None => return Ok(all),
            }
        }
    }

    /// One terminal: inventory, current plan, last report, addresses (`GET /v1/terminals/{id}`).
    pub fn terminal(&self, id: &str) -> Result<TerminalDetail, ClientError> {
        let path = format!("/v1/terminals/{}", segment(id));
        self.get_json(&path, &[], MAX_JSON_ANSWER)
    }

    /// A terminal's whole gaps (`GET /v1/terminals/{id}/gap`): every threat its plan lists
    /// only the first of.
    pub fn terminal_gap(&self, id: &str) -> Result<herd_proto::api::TerminalGap, ClientError> {
        let path = format!("/v1/terminals/{}/gap", segment(id));
        // A gap can name every threat of the catalog: allow more than a usual answer.
        self.get_json(&path, &[], 4 * MAX_JSON_ANSWER)
    }

    /// A terminal's current plan exactly as the terminal received it (`GET
    /// /v1/terminals/{id}/plan`), unparsed.
    pub fn terminal_plan(&self, id: &str) -> Result<String, ClientError> {
        let path = format!("/v1/terminals/{}/plan", segment(id));
        let response = self.call(Method::GET, &path, &[], Payload::None, false)?;
        let bytes = self.read_body(response, MAX_JSON_ANSWER, &format!("GET {path}"))?;
        String::from_utf8(bytes).map_err(|_| ClientError::Corrupt {
            server: self.server.clone(),
            what: format!("GET {path}"),
            detail: "the center's answer is not UTF-8 text".to_owned(),
        })
    }

    /// Removes a terminal; its certificate stops working at once (`DELETE /v1/terminals/{id}`).
    pub fn delete_terminal(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/terminals/{}", segment(id));
        let response = self.call(Method::DELETE, &path, &[], Payload::None, false)?;
        self.drain(response, &format!("DELETE {path}"))
    }

    /// Whether the center has a sample, asked by a terminal before uploading it
    /// (`GET /v1/terminal/samples/{sha256}`).
    pub fn sample_held(
        &self,
        sha256: &str,
    ) -> Result<herd_proto::api::SamplePresence, ClientError> {
        let path = format!("/v1/terminal/samples/{}", segment(sha256));
        self.get_json(&path, &[], MAX_JSON_ANSWER)
    }

    /// Sets or removes the address a terminal's user gets consent notices at
    /// (`PUT /v1/terminals/{id}/email`).
    pub fn set_terminal_email(&self, id: &str, email: Option<&str>) -> Result<(), ClientError> {
        let path = format!("/v1/terminals/{}/email", segment(id));
        let body = herd_proto::consent::TerminalEmail {
            email: email.map(str::to_owned),
        };
        let bytes = serde_json::to_vec(&body).map_err(|err| {
            ClientError::Invalid(format!("PUT {path}: cannot encode the request: {err}"))
        })?;
        let response = self.call(Method::PUT, &path, &[], Payload::Json(bytes), false)?;
        self.drain(response, &format!("PUT {path}"))
    }

    /// The consent questions mailed for a terminal (`GET /v1/terminals/{id}/consents`).
    pub fn terminal_consents(
        &self,
        id: &str,
    ) -> Result<herd_proto::consent::ConsentRequestList, ClientError> {
        let path = format!("/v1/terminals/{}/consents", segment(id));
        self.get_json(&path, &[], MAX_JSON_ANSWER)
    }

    /// Threats × products: who covers what since when (`GET /v1/coverage`).
    pub fn coverage(&self) -> Result<CoverageMatrix, ClientError> {
        self.get_json("/v1/coverage", &[], MAX_CATALOG_ANSWER)
    }

    /// The merged `herd.catalog/v1` document every plan is computed from (`GET /v1/catalog`).
    pub fn catalog(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/catalog", &[], MAX_CATALOG_ANSWER)
    }

    /// Groups with their policies and sizes (`GET /v1/groups`).
    pub fn groups(&self) -> Result<GroupList, ClientError> {
        let served: ServedGroupList = self.get_json("/v1/groups", &[], MAX_JSON_ANSWER)?;
        Ok(GroupList {
            groups: served.groups.into_iter().map(GroupDoc::from).collect(),
        })
    }

    /// Creates or replaces a group (`PUT /v1/groups/{id}`).
    pub fn put_group(&self, group: &GroupDoc) -> Result<GroupDoc, ClientError> {
        /// The request body: a group without the response-only terminal count.
        #[derive(Serialize)]
        struct GroupRequest<'a> {
            id: &'a str,
            description: &'a str,
            policy: &'a herd_proto::terminal::PolicyDoc,
        }
        let path = format!("/v1/groups/{}", segment(&group.id));
        let body = GroupRequest {
            id: &group.id,
            description: &group.description,
            policy: &group.policy,
        };
        let served: ServedGroup = self.send_json(Method::PUT, &path, &body)?;
        Ok(served.into())
    }

    /// A verdict on a file (`POST /v1/verdicts`): `malicious` publishes its signature in
    /// Herd's own set, `benign` removes it.
    pub fn verdict(
        &self,
        verdict: &herd_proto::api::VerdictDoc,
    ) -> Result<herd_proto::api::VerdictOutcome, ClientError> {
        self.send_json(Method::POST, "/v1/verdicts", verdict)
    }

    /// Herd's own signature set (`GET /v1/herd-set`).
    pub fn herd_set(&self) -> Result<Vec<herd_proto::api::HerdSignatureDoc>, ClientError> {
        self.get_json("/v1/herd-set", &[], MAX_JSON_ANSWER)
    }

    /// The analysts' body signatures of Herd's set (`GET /v1/herd-set/body-signatures`).
    pub fn body_signatures(&self) -> Result<Vec<herd_proto::api::BodySignatureDoc>, ClientError> {
        self.get_json("/v1/herd-set/body-signatures", &[], MAX_JSON_ANSWER)
    }

    /// Adds body signatures to Herd's set (`POST /v1/herd-set/body-signatures`).
    pub fn add_body_signatures(
        &self,
        doc: &herd_proto::api::BodySignaturesDoc,
    ) -> Result<herd_proto::api::BodySignaturesOutcome, ClientError> {
        self.send_json(Method::POST, "/v1/herd-set/body-signatures", doc)
    }

    /// Removes a body signature from Herd's set (`DELETE /v1/herd-set/body-signatures/{name}`).
    pub fn remove_body_signature(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/herd-set/body-signatures/{}", segment(name)))
    }

    /// The sample store (`GET /v1/samples`).
    pub fn samples(&self) -> Result<Vec<herd_proto::api::SampleDoc>, ClientError> {
        self.get_json("/v1/samples", &[], MAX_JSON_ANSWER)
    }

    /// A sample's bytes, still neutralised (`GET /v1/samples/{sha256}`), at most `limit`.
    pub fn sample(&self, sha256: &str, limit: u64) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/samples/{}", segment(sha256));
        let response = self.call(Method::GET, &path, &[], Payload::None, false)?;
        self.read_body(response, limit, &format!("GET {path}"))
    }

    /// Deletes a group no terminal and no rule uses (`DELETE /v1/groups/{id}`).
    pub fn delete_group(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/groups/{}", segment(id));
        let response = self.call(Method::DELETE, &path, &[], Payload::None, false)?;
        self.drain(response, &format!("DELETE {path}"))
    }

    /// The placement rules in evaluation order (`GET /v1/placement-rules`).
    pub fn rules(&self) -> Result<PlacementRules, ClientError> {
        self.get_json("/v1/placement-rules", &[], MAX_JSON_ANSWER)
    }

    /// Replaces every placement rule at once (`PUT /v1/placement-rules`).
    pub fn put_rules(&self, rules: &PlacementRules) -> Result<PlacementRules, ClientError> {
        self.send_json(Method::PUT, "/v1/placement-rules", rules)
    }

    /// A new enrolment token for terminals (`POST /v1/enrolment-tokens`); shown once.
    pub fn new_enrolment_token(
        &self,
        request: &NewEnrolmentToken,
    ) -> Result<TokenCreated, ClientError> {
        self.send_json(Method::POST, "/v1/enrolment-tokens", request)
    }

    /// A new API token for an operator or a vendor (`POST /v1/tokens`); shown once.
    pub fn new_api_token(&self, request: &NewApiToken) -> Result<TokenCreated, ClientError> {
        self.send_json(Method::POST, "/v1/tokens", request)
    }

    /// A one-time web console sign-in link for this client's token (`POST /v1/console/links`);
    /// its secret is shown once.
    pub fn new_console_link(
        &self,
        request: &herd_proto::api::NewConsoleLink,
    ) -> Result<herd_proto::api::ConsoleLink, ClientError> {
        self.send_json(Method::POST, "/v1/console/links", request)
    }

    /// The center's CA: trust anchors, issuer, expiry (`GET /v1/ca`).
    pub fn ca(&self) -> Result<CaInfo, ClientError> {
        self.get_json("/v1/ca", &[], MAX_JSON_ANSWER)
    }

    /// Installs an intermediate CA under an offline root (`PUT /v1/ca`).
    pub fn install_ca(&self, request: &CaInstall) -> Result<CaInfo, ClientError> {
        self.send_json(Method::PUT, "/v1/ca", request)
    }

    /// Every API and enrolment token, without secrets (`GET /v1/tokens`).
    pub fn tokens(&self) -> Result<herd_proto::api::TokenList, ClientError> {
        self.get_json("/v1/tokens", &[], MAX_JSON_ANSWER)
    }

    /// Revokes the token with this id (`DELETE /v1/tokens/{id}`); `force` allows revoking the
    /// last valid operator token.
    pub fn revoke_token(
        &self,
        id: &str,
        force: bool,
    ) -> Result<herd_proto::api::TokenRevoked, ClientError> {
        let path = format!("/v1/tokens/{}", segment(id));
        let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
        let response = self.call(Method::DELETE, &path, query, Payload::None, false)?;
        self.json(response, &format!("DELETE {path}"), MAX_JSON_ANSWER)
    }

    /// Renews this terminal's client certificate (`POST /v1/renew`, mutual TLS): the new
    /// certificate and the center's CA certificates.
    pub fn renew_certificate(
        &self,
        request: &herd_proto::api::CertificateRenewal,
    ) -> Result<herd_proto::api::CertificateRenewed, ClientError> {
        self.send_json(Method::POST, "/v1/renew", request)
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing.

    /// Threats with their owner and approval, of one `status` or all (`GET /v1/threats`).
    pub fn threats(&self, status: Option<&str>) -> Result<ThreatList, ClientError> {
        let query: Vec<(&str, &str)> = status.map(|s| ("status", s)).into_iter().collect();
        self.get_json("/v1/threats", &query, MAX_JSON_ANSWER)
    }

    /// Approves or rejects a threat (`POST /v1/threats/{id}/approve|reject`).
    pub fn decide_threat(&self, id: &str, approve: bool) -> Result<(), ClientError> {
        let verb = if approve { "approve" } else { "reject" };
        self.post_empty(&format!("/v1/threats/{}/{verb}", segment(id)))
    }

    /// Gives a threat to another vendor (`PUT /v1/threats/{id}/owner`).
    pub fn reassign_threat(&self, id: &str, vendor: &str) -> Result<(), ClientError> {
        let path = format!("/v1/threats/{}/owner", segment(id));
        let bytes = serde_json::to_vec(&ThreatOwner {
            vendor: vendor.to_owned(),
        })
        .map_err(|err| ClientError::Invalid(format!("PUT {path}: {err}")))?;
        let response = self.call(Method::PUT, &path, &[], Payload::Json(bytes), false)?;
        self.drain(response, &format!("PUT {path}"))
    }

    /// Vendors that have published, of one `status` or all (`GET /v1/vendors`).
    pub fn vendors(&self, status: Option<&str>) -> Result<VendorList, ClientError> {
        let query: Vec<(&str, &str)> = status.map(|s| ("status", s)).into_iter().collect();
        self.get_json("/v1/vendors", &query, MAX_JSON_ANSWER)
    }

    /// Approves or rejects a vendor (`POST /v1/vendors/{id}/approve|reject`).
    pub fn decide_vendor(&self, id: &str, approve: bool) -> Result<(), ClientError> {
        let verb = if approve { "approve" } else { "reject" };
        self.post_empty(&format!("/v1/vendors/{}/{verb}", segment(id)))
    }

    /// Collects the center's blob store now (`POST /v1/blobs/collect`).
    pub fn collect_blobs(&self) -> Result<BlobCollection, ClientError> {
        let path = "/v1/blobs/collect";
        let response = self.call(Method::POST, path, &[], Payload::None, false)?;
        self.json(response, &format!("POST {path}"), MAX_JSON_ANSWER)
    }

    fn post_empty(&self, path: &str) -> Result<(), ClientError> {
        let response = self.call(Method::POST, path, &[], Payload::None, false)?;
        self.drain(response, &format!("POST {path}"))
    }

    fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        limit: u64,
    ) -> Result<T, ClientError> {
        let response = self.call(Method::GET, path, query, Payload::None, false)?;
        self.json(response, &format!("GET {path}"), limit)
    }

    fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let bytes = serde_json::to_vec(body).map_err(|err| {
            ClientError::Invalid(format!("{what}: cannot encode the request: {err}"))
        })?;
        let response = self.call(method, path, &[], Payload::Json(bytes), false)?;
        self.json(response, &what, MAX_JSON_ANSWER)
    }

    /// Sends one request and returns the answer if it is a success; any other status becomes
    /// [`ClientError::Refused`]. `transfer` replaces the overall deadline by a stall timeout.
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        payload: Payload,
        transfer: bool,
    ) -> Result<http::Response<Body>, ClientError> {
        self.call_with(method, path, query, &[], payload, transfer)
    }

    /// [`call`](Self::call) with extra request headers.
    fn call_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(header::HeaderName, String)],
        payload: Payload,
        transfer: bool,
    ) -> Result<http::Response<Body>, ClientError> {
        let timing = if transfer {
            Timing::Transfer
        } else {
            Timing::Request
        };
        self.call_timed(method, path, query, headers, payload, timing)
    }

    /// A `GET` the server may hold for up to `hold` before answering (`/v1/wait`, a site's
    /// pull): its deadline is the hold plus [`REQUEST_TIMEOUT`].
    pub(crate) fn get_json_held<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        hold: Duration,
    ) -> Result<T, ClientError> {
        let response = self.call_timed(
            Method::GET,
            path,
            query,
            &[],
            Payload::None,
            Timing::Held(hold),
        )?;
        self.json(response, &format!("GET {path}"), MAX_JSON_ANSWER)
    }

    fn call_timed(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(header::HeaderName, String)],
        payload: Payload,
        timing: Timing,
    ) -> Result<http::Response<Body>, ClientError> {
        let what = format!("{method} {path}");
        let mut url = format!("{}{path}", self.server);
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&query_component(name));
            url.push('=');
            url.push_str(&query_component(value));
        }
        let mut builder = http::Request::builder()
            .method(method)
            .uri(url)
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, &**authorization);
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        // How much of the body ureq took, to say how far an upload got if the center cut it.
        let sent = Arc::new(AtomicU64::new(0));
        let (body, total) = match payload {
            Payload::None => (SendBody::none(), None),
            Payload::Json(bytes) => {
                let total = bytes.len() as u64;
                builder = builder
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CONTENT_LENGTH, total);
                let reader = Counted {
                    inner: io::Cursor::new(bytes),
                    count: sent.clone(),
                };
                (SendBody::from_owned_reader(reader), Some(total))
            }
            Payload::Stream { reader, length } => {
                builder = builder
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, length)
                    // The center answers an unauthorised upload before reading the body, so
                    // a refused package is not sent in full only to be thrown away.
                    .header(header::EXPECT, "100-continue");
                let reader = Counted {
                    inner: reader,
                    count: sent.clone(),
                };
                (SendBody::from_owned_reader(reader), Some(length))
            }
        };
        let request = builder.body(body).map_err(|err| {
            ClientError::Invalid(format!(
                "{what}: cannot build the request (is the API token plain text?): {err}"
            ))
        })?;
        let request = match timing {
            Timing::Transfer => self
                .agent
                .configure_request(request)
                .timeout_global(None)
                .timeout_per_read(Some(TRANSFER_STALL_TIMEOUT))
                .timeout_per_write(Some(TRANSFER_STALL_TIMEOUT))
                .build(),
            Timing::Held(hold) => self
                .agent
                .configure_request(request)
                .timeout_global(Some(hold + REQUEST_TIMEOUT))
                .build(),
            Timing::Request => request,
        };
        tls::clear_send_broken();
        let response = self.agent.run(request).map_err(|err| match (err, total) {
            (ureq::Error::Io(io), Some(total)) if is_send_broken(&io) => {
                ClientError::RejectedWhileSending {
                    server: self.server.clone(),
                    what: what.clone(),
                    sent: sent.load(Ordering::Relaxed).min(total),
                    total,
                    detail: io.to_string(),
                }
            }
            (err, _) => self.transport_error(err, &what, false),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let mut body = Vec::new();
        // An error body that cannot be read in full still has a status worth reporting.
        let _ = response
            .into_body()
            .into_with_config()
            .limit(MAX_ERROR_ANSWER)
            .reader()
            .read_to_end(&mut body);
        let mut err = ClientError::from_answer(status, &body);
        if let (ClientError::Refused { message, .. }, Some(total), 413) = (&mut err, total, status)
        {
            // The center's message names its limit; the size of what was sent completes it.
            *message = format!(
                "the center refused the document as too large ({total} bytes; the center's limit is in its answer): {message}"
            );
        }
        Err(err)
    }

    fn read_body(
        &self,
        response: http::Response<Body>,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, ClientError> {
        response
            .into_body()
            .into_with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|err| match err {
                ureq::Error::BodyExceedsLimit(_) => ClientError::Corrupt {
                    server: self.server.clone(),
                    what: what.to_owned(),
                    detail: format!("the answer is larger than {limit} bytes"),
                },
                other => self.transport_error(other, what, true),
            })
    }

    fn json<T: DeserializeOwned>(
        &self,
        response: http::Response<Body>,
        what: &str,
        limit: u64,
    ) -> Result<T, ClientError> {
        let bytes = self.read_body(response, limit, what)?;
        serde_json::from_slice(&bytes).map_err(|err| ClientError::Corrupt {
            server: self.server.clone(),
            what: what.to_owned(),
            detail: format!("the center's answer is not what API v1 describes: {err}"),
        })
    }

    /// Reads and drops a success answer's body, so the connection can be reused.
    fn drain(&self, response: http::Response<Body>, what: &str) -> Result<(), ClientError> {
        self.read_body(response, MAX_JSON_ANSWER, what).map(drop)
    }

    /// Sorts a ureq failure by kind. `in_body`: the answer had started, so a broken connection
    /// or a stall cut it short (`Interrupted`) rather than preventing it (`Unreachable`).
    pub(crate) fn transport_error(
        &self,
        err: ureq::Error,
        what: &str,
        in_body: bool,
    ) -> ClientError {
        use ureq::Error as E;
        let server = self.server.clone();
        let unreachable = |detail: String| {
            if in_body {
                ClientError::Interrupted {
                    server: self.server.clone(),
                    what: what.to_owned(),
                    detail,
                }
            } else {
                ClientError::Unreachable {
                    server: self.server.clone(),
                    detail,
                }
            }
        };
        match err {
            E::Rustls(tls) if is_certificate_error(&tls) => ClientError::Certificate {
                server,
                detail: tls.to_string(),
            },
            E::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                Some(tls) if is_certificate_error(tls) => ClientError::Certificate {
                    server,
                    detail: tls.to_string(),
                },
                _ => unreachable(io.to_string()),
            },
            E::Timeout(which) => unreachable(format!("no answer in time ({which} timeout)")),
            E::HostNotFound => unreachable("the host name does not resolve".to_owned()),
            E::ConnectionFailed => unreachable("the connection failed".to_owned()),
            E::Tls(detail) => unreachable(format!("TLS failed: {detail}")),
            E::Rustls(tls) => unreachable(format!("TLS failed: {tls}")),
            E::Protocol(protocol) => unreachable(format!("the HTTP exchange broke: {protocol}")),
            E::BodyStalled => unreachable("the answer stopped arriving".to_owned()),
            other => ClientError::Corrupt {
                server,
                what: what.to_owned(),
                detail: other.to_string(),
            },
        }
    }
}

/// A TLS failure about certificates — ours refused by the server, or the server's not trusted —
/// as opposed to a handshake the network broke.
fn is_certificate_error(err: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
        ),
        _ => false,
    }
}

/// Whether `err` is the TLS transport's report of a request body cut off by the center.
fn is_send_broken(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<tls::SendBroken>())
}

/// Counts the bytes ureq reads from a request body, until the connection breaks while sending
/// (from then on ureq reads on but nothing is sent).
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: io::Read> io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !tls::send_broken() {
            self.count.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// A group as the center serves it. `GroupDoc` is also the request type and refuses the
/// response-only `terminals` count, so answers are read through this and converted.
#[derive(Deserialize)]
struct ServedGroup {
    id: String,
    #[serde(default)]
    description: String,
    policy: herd_proto::terminal::PolicyDoc,
    #[serde(default)]
    terminals: u64,
}

impl From<ServedGroup> for GroupDoc {
    fn from(served: ServedGroup) -> GroupDoc {
        GroupDoc {
            id: served.id,
            description: served.description,
            policy: served.policy,
            terminals: served.terminals,
        }
    }
}

#[derive(Deserialize)]
struct ServedGroupList {
    groups: Vec<ServedGroup>,
}

/// A request's deadline: the overall [`REQUEST_TIMEOUT`], a transfer's stall timeout, or a
/// held request's hold plus the timeout.
#[derive(Clone, Copy, Debug)]
enum Timing {
    Request,
    Transfer,
    Held(Duration),
}

/// What a request carries.
enum Payload {
    None,
    Json(Vec<u8>),
    /// Exactly `length` bytes from `reader`, sent as they are read.
    Stream {
        reader: Box<dyn std::io::Read + Send>,
        length: u64,
    },
}

fn normalise_server(server: &str) -> Result<String, ClientError> {
    let trimmed = server.trim().trim_end_matches('/');
    let bad = |why: &str| ClientError::Invalid(format!("the server address {server:?} {why}"));
    let uri: http::Uri = trimmed
        .parse()
        .map_err(|err| bad(&format!("is not a URL: {err}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad(
            "must start with https:// (the center speaks HTTPS only), like https://127.0.0.1:8443",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host name"));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query (`?…`)"));
    }
    Ok(trimmed.to_owned())
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters, so an
/// id can never add a path component or a query.
fn segment(value: &str) -> String {
    percent_encode(value)
}

fn query_component(value: &str) -> String {
    percent_encode(value)
}

/// Percent-encodes everything but RFC 3986's unreserved characters: a path segment or a query
/// component that can add neither a component nor a parameter. The one encoder of Herd's
/// programs (the console's links, alert templates, the simulator's queries use it too).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_normalised_and_checked() {
        assert_eq!(
            normalise_server(" https://127.0.0.1:8443/ ").unwrap(),
            "https://127.0.0.1:8443"
        );
        assert_eq!(
            normalise_server("https://center.example/herd").unwrap(),
            "https://center.example/herd"
        );
        let err = normalise_server("http://127.0.0.1:8443").unwrap_err();
        assert!(
            err.to_string().contains("must start with https://"),
            "{err}"
        );
        let err = normalise_server("127.0.0.1:8443").unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        let err = normalise_server("https://127.0.0.1:8443/?x=1").unwrap_err();
        assert!(err.to_string().contains("query"), "{err}");
        assert!(normalise_server("https://").is_err());
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(segment("maker-a_1.2~x"), "maker-a_1.2~x");
        assert_eq!(segment("../admin?x=1#y"), "..%2Fadmin%3Fx%3D1%23y");
        assert_eq!(query_component("a b&c=é"), "a%20b%26c%3D%C3%A9");
    }

    #[test]
    fn bad_tls_material_is_refused_when_the_client_is_built() {
        let err = Client::new("https://127.0.0.1:1", "not a certificate", None).unwrap_err();
        assert!(err.to_string().contains("the CA certificate"), "{err}");

        let (ca_pem, _ca_key) = herd_tls::CertificateAuthority::generate("test CA").unwrap();
        let (key_pem, _csr) = herd_tls::new_key_and_csr("t1").unwrap();
        let identity = KeyPairPem {
            cert_pem: ca_pem.clone(),
            key_pem,
        };
        let err = Client::new("https://127.0.0.1:1", &ca_pem, Some(&identity)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot set up TLS for https://127.0.0.1:1"),
            "{err}"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let (ca_pem, _ca_key) = herd_tls::CertificateAuthority::generate("test CA").unwrap();
        let client = Client::new("https://127.0.0.1:1", &ca_pem, None)
            .unwrap()
            .with_token("herd_secret\n");
        let shown = format!("{client:?}");
        assert!(!shown.contains("herd_secret"), "{shown}");
        assert!(shown.contains("elided"), "{shown}");
    }

    #[test]
    fn group_lists_as_served_parse() {
        // The center serves each group with its terminal count.
        let served = r#"{"groups": [{"id": "unknown", "description": "", "policy":
            {"apply": "latest-any-vendor", "window": null}, "terminals": 3}]}"#;
        let groups: ServedGroupList = serde_json::from_str(served).unwrap();
        let group = GroupDoc::from(groups.groups.into_iter().next().unwrap());
        assert_eq!(group.id, "unknown");
        assert_eq!(group.terminals, 3);
        assert_eq!(group.policy.apply, "latest-any-vendor");
    }
}
