//! Talking to a running `segstream serve`: a client that carries the bearer token, and
//! results printed the way the embedded shell prints them.

use std::path::Path;

use anyhow::Context;
use segstream_proto::v1::segstream_client::SegstreamClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub type Client = SegstreamClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every call when a token is configured.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where and how to reach a server.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `host:port`, or a URL (`https://` for TLS).
    pub addr: String,
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for TLS, e.g. a self-signed server certificate.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Remote {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let tls = self.ca_cert.is_some() || self.addr.starts_with("https://");
        let url = if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("{}://{}", if tls { "https" } else { "http" }, self.addr)
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("`{}` is not a server address", self.addr))?;
        if tls {
            let mut config = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_cert {
                config = config.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            endpoint = endpoint.tls_config(config).context("configuring TLS")?;
        }
        let channel = endpoint.connect().await.with_context(|| {
            format!("cannot reach a segstream server at {url} (is `segstream serve` running?)")
        })?;
        let token = match &self.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse::<MetadataValue<Ascii>>()
                    .context("the token cannot be sent in a header")?,
            ),
            None => None,
        };
        Ok(SegstreamClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(256 << 20))
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A gRPC error as one line: the server's message (which names the position for SQL).
pub fn describe(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unauthenticated => {
            format!("{} (give the token with --token or SEGSTREAM_TOKEN)", status.message())
        }
        tonic::Code::Unavailable if status.message().is_empty() => "the server is unavailable".into(),
        _ => status.message().to_string(),
    }
}
