//! The mock's own CA and the server certificate it issues, and the rustls server config.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a server certificate issued by it.
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate, PEM (what clients trust: `DIR/ca.pem`).
    pub ca_pem: String,
    /// The server chain: leaf, then CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server's PKCS#8 private key.
    key_der: Vec<u8>,
}

/// Why certificates could not be made.
#[derive(Debug)]
pub struct CertError(pub String);

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot create the mock's certificates: {}", self.0)
    }
}

fn err(e: impl std::fmt::Display) -> CertError {
    CertError(e.to_string())
}

impl Pki {
    /// Makes a fresh CA and a server certificate for `sans` (DNS names or IP addresses).
    pub fn generate(sans: &[String]) -> Result<Self, CertError> {
        Self::generate_with(sans, false)
    }

    /// Like [`Pki::generate`], but the server certificate's validity ended yesterday (it
    /// began 30 days ago); the CA is valid.
    pub fn generate_expired(sans: &[String]) -> Result<Self, CertError> {
        Self::generate_with(sans, true)
    }

    fn generate_with(sans: &[String], expired: bool) -> Result<Self, CertError> {
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut ca_dn = DistinguishedName::new();
        ca_dn.push(DnType::CommonName, "mock-duo test CA");
        ca_params.distinguished_name = ca_dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;

        let server_key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        // Old verifiers fall back to the common name; give them the first name too.
        if let Some(first) = sans.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        }
        let server_cert = params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .map_err(err)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der: server_key.serialize_der(),
        })
    }

    /// A rustls server config (ring, TLS 1.2 and 1.3, HTTP/1.1 only) serving this chain.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .map_err(err)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
