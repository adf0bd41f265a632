//! The simulator's PKI and HTTPS listeners.
//!
//! A stamp serves its endpoints with a certificate from the operator's CA; the
//! simulator does the same with a CA it creates ([`Pki`]). Both listeners (ARM and
//! Kubernetes) present a server certificate for `localhost` and `127.0.0.1`. The
//! Kubernetes listener also asks for a client certificate (optional, verified
//! against the simulator's CA) and marks the requests of a connection that
//! presented one with a [`ClientCertVerified`] request extension.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;

/// Marker inserted into the request extensions of every request received on a
/// connection whose client presented a certificate issued by the simulator's CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertVerified {
    /// The certificate subject's common name (CN), empty when it has none.
    pub common_name: String,
}

/// Errors of certificate generation and TLS setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("cannot read the CA in {path}: {message}")]
    LoadCa { path: String, message: String },
}

/// A certificate with its private key, both PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM. A secret.
    pub key_pem: String,
}

/// The simulator's certificate authority.
pub struct Pki {
    ca_cert_pem: String,
    ca_cert_der: Vec<u8>,
    ca_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

const CA_COMMON_NAME: &str = "aksup simulator CA";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    name.push(DnType::OrganizationName, "aksup simulator");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Pki {
    /// A new CA (ECDSA P-256).
    pub fn generate() -> Result<Self, Error> {
        let key = KeyPair::generate()?;
        let params = ca_params();
        let cert = params.self_signed(&key)?;
        let ca_key_pem = key.serialize_pem();
        Ok(Self {
            ca_cert_pem: cert.pem(),
            ca_cert_der: cert.der().to_vec(),
            ca_key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Reuses the CA written by [`Pki::save`] in `dir`, or creates one.
    pub fn load_or_generate(dir: &Path) -> Result<Self, Error> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        if cert_path.exists() && key_path.exists() {
            let load_error = |message: String| Error::LoadCa {
                path: cert_path.display().to_string(),
                message,
            };
            let cert_pem =
                std::fs::read_to_string(&cert_path).map_err(|e| load_error(e.to_string()))?;
            let key_pem =
                std::fs::read_to_string(&key_path).map_err(|e| load_error(e.to_string()))?;
            let key = KeyPair::from_pem(&key_pem)?;
            let der =
                pem_to_der(&cert_pem).ok_or_else(|| load_error("no CERTIFICATE block".into()))?;
            return Ok(Self {
                ca_cert_pem: cert_pem,
                ca_cert_der: der,
                ca_key_pem: key_pem,
                issuer: Issuer::new(ca_params(), key),
            });
        }
        Self::generate()
    }

    /// Writes `ca.crt` and `ca.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        write_file(&dir.join("ca.crt"), self.ca_cert_pem.as_bytes(), false)?;
        write_file(&dir.join("ca.key"), self.ca_key_pem.as_bytes(), true)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    pub fn ca_der(&self) -> &[u8] {
        &self.ca_cert_der
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn issue_server(&self) -> Result<IssuedCert, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("an IP")));
        params
            .subject_alt_names
            .push(SanType::IpAddress("::1".parse().expect("an IP")));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A TLS client certificate (ECDSA P-256) with subject `CN=<common_name>, O=<organization>`.
    pub fn issue_client(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<IssuedCert, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A self-signed RSA 2048 certificate for a service principal (client
    /// certificate authentication to AAD / ADFS).
    pub fn issue_service_principal(common_name: &str) -> Result<IssuedCert, Error> {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The rustls configuration of a listener. With `client_auth`, clients may
    /// present a certificate issued by this CA (anything else is refused in the
    /// handshake); presenting none is allowed.
    pub fn server_config(&self, client_auth: bool) -> Result<Arc<rustls::ServerConfig>, Error> {
        let server = self.issue_server()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(self.ca_cert_der.clone()))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key =
            pem_to_der_tagged(&server.key_pem, "PRIVATE KEY").expect("rcgen writes PKCS#8 PEM");
        let mut config = builder.with_single_cert(
            vec![
                CertificateDer::from(server.cert_der),
                CertificateDer::from(self.ca_cert_der.clone()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// An acceptor that performs the TLS handshake, then marks the connection's
/// requests with [`ClientCertVerified`] when the client presented a certificate
/// (rustls has already verified it against the CA).
#[derive(Clone)]
pub struct ClientCertAcceptor {
    inner: RustlsAcceptor<DefaultAcceptor>,
}

impl ClientCertAcceptor {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            inner: RustlsAcceptor::new(RustlsConfig::from_config(config)),
        }
    }
}

type AcceptFuture<S> = Pin<Box<dyn Future<Output = io::Result<(S, Router)>> + Send>>;

impl Accept<TcpStream, Router> for ClientCertAcceptor {
    type Stream = <RustlsAcceptor<DefaultAcceptor> as Accept<TcpStream, Router>>::Stream;
    type Service = Router;
    type Future = AcceptFuture<Self::Stream>;

    fn accept(&self, stream: TcpStream, service: Router) -> Self::Future {
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let verified = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| ClientCertVerified {
                    common_name: common_name_of(leaf.as_ref()).unwrap_or_default(),
                });
            let service = match verified {
                Some(marker) => service.layer(axum::Extension(marker)),
                None => service,
            };
            Ok((stream, service))
        })
    }
}

/// A running HTTPS listener.
pub struct Listener {
    pub addr: SocketAddr,
    pub handle: axum_server::Handle<SocketAddr>,
    pub task: tokio::task::JoinHandle<io::Result<()>>,
}

/// Serves `router` over HTTPS on `listener` (already bound).
pub fn serve(
    listener: std::net::TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<Listener> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)?
        .acceptor(ClientCertAcceptor::new(config))
        .handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(router.into_make_service()).await });
    Ok(Listener { addr, handle, task })
}

/// The first certificate of a PEM text, DER.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    pem_to_der_tagged(pem, "CERTIFICATE")
}

fn pem_to_der_tagged(pem: &str, tag: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {tag}-----");
    let end = format!("-----END {tag}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The CN of a DER certificate's subject, read with a minimal DER walk.
pub fn common_name_of(cert_der: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serial, sigAlg, issuer, validity, subject, ... } }
    let (_, cert_body, _) = der_read(cert_der)?;
    let (_, tbs, _) = der_read(cert_body)?;
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() && fields.len() < 6 {
        let (tag, content, next) = der_read(rest)?;
        fields.push((tag, content));
        rest = next;
    }
    let offset = usize::from(fields.first()?.0 == 0xa0);
    let subject = fields.get(offset + 4)?.1;
    let mut names = subject;
    let mut common_name = None;
    while !names.is_empty() {
        let (_, set, next) = der_read(names)?;
        names = next;
        let (_, attribute, _) = der_read(set)?;
        let (oid_tag, oid, value_rest) = der_read(attribute)?;
        if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
            let (_, value, _) = der_read(value_rest)?;
            common_name = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    common_name
}

/// Reads one DER TLV: (tag, content, rest).
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let mut length = 0usize;
        for index in 0..count {
            length = (length << 8) | *input.get(2 + index)? as usize;
        }
        (length, 2 + count)
    };
    let content = input.get(header..header + length)?;
    Some((tag, content, &input[header + length..]))
}

/// Writes a file, 0600 when `secret`.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_carry_their_common_name() {
        let pki = Pki::generate().unwrap();
        let client = pki
            .issue_client("masterclient", Some("system:masters"))
            .unwrap();
        assert_eq!(
            common_name_of(&client.cert_der).as_deref(),
            Some("masterclient")
        );
        assert_eq!(
            common_name_of(pki.ca_der()).as_deref(),
            Some(CA_COMMON_NAME)
        );
    }

    #[test]
    fn a_saved_ca_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate().unwrap();
        pki.save(dir.path()).unwrap();
        let again = Pki::load_or_generate(dir.path()).unwrap();
        assert_eq!(again.ca_pem(), pki.ca_pem());
        // Certificates issued by the reloaded CA chain to the saved certificate.
        again.server_config(true).unwrap();
    }
}
