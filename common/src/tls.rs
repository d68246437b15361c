//! Trust roots and the rustls configuration for talking to Duo.
//!
//! Like duo_unix, the client trusts only the root CAs that Duo's API hosts chain to, never the
//! system store: a CA that a host's administrator (or an attacker with root on a neighbour)
//! adds to `/etc/ssl/certs` must not be able to impersonate Duo. The roots are taken from the
//! `webpki-roots` crate (Mozilla's list, reviewed and versioned) by their subject name, so no
//! certificate is copied into this source. An operator's `cafile` replaces the list entirely.
//!
//! There is deliberately no way to turn certificate or host name verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, TrustAnchor};
use rustls::RootCertStore;

use crate::api::DuoError;

/// Which attribute of a subject name identifies a pinned root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameAttr {
    /// commonName (2.5.4.3).
    CommonName,
    /// organizationalUnitName (2.5.4.11), for old roots that have no CN.
    OrganizationalUnit,
}

/// A root CA that Duo's API hosts are known to chain to, identified by one subject attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedRoot {
    /// The attribute that names it.
    pub attr: NameAttr,
    /// The attribute's exact value.
    pub value: &'static str,
}

const fn cn(value: &'static str) -> PinnedRoot {
    PinnedRoot {
        attr: NameAttr::CommonName,
        value,
    }
}

/// The roots duo_unix pins (see `shared/duo-auth-api.md`, "TLS"), by the names they carry in
/// their certificates.
///
/// `webpki-roots` follows Mozilla, which has since removed some of them; those are reported by
/// [`missing_pinned_roots`] and are simply not trusted (see the unit test for the current list).
/// An operator who needs one of them can put it in `cafile`.
pub const DUO_PINNED_ROOTS: &[PinnedRoot] = &[
    cn("Amazon Root CA 1"),
    cn("Amazon Root CA 2"),
    cn("Amazon Root CA 3"),
    cn("Amazon Root CA 4"),
    cn("Starfield Services Root Certificate Authority - G2"),
    // "Starfield Class 2" has no CN; its OU names it.
    PinnedRoot {
        attr: NameAttr::OrganizationalUnit,
        value: "Starfield Class 2 Certification Authority",
    },
    cn("Starfield Root Certificate Authority - G2"),
    cn("DigiCert High Assurance EV Root CA"),
    cn("DigiCert TLS ECC P384 Root G5"),
    cn("DigiCert TLS RSA4096 Root G5"),
    cn("GlobalSign Root R46"),
    cn("GlobalSign Root E46"),
    cn("GTS Root R2"),
    cn("GTS Root R4"),
    cn("IdenTrust Commercial Root CA 1"),
    cn("IdenTrust TLS ECC Root CA 2"),
];

/// OID 2.5.4.3 (commonName), DER contents.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// OID 2.5.4.11 (organizationalUnitName), DER contents.
const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];

/// Reads one DER TLV from the front of `input`: (tag, contents, rest). Only definite lengths up
/// to four length bytes, which covers every certificate name.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The (OID, value) pairs of a DER Name's contents (the RDNSequence without its outer
/// SEQUENCE header, as `TrustAnchor::subject` holds it). String types are not distinguished:
/// every value in the names we match is ASCII (PrintableString or UTF8String).
fn name_attributes(mut name: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, rest) = der_tlv(name)?;
        if tag != 0x31 {
            return None;
        }
        while !set.is_empty() {
            let (tag, seq, set_rest) = der_tlv(set)?;
            if tag != 0x30 {
                return None;
            }
            let (oid_tag, oid, seq_rest) = der_tlv(seq)?;
            let (_value_tag, value, _) = der_tlv(seq_rest)?;
            if oid_tag != 0x06 {
                return None;
            }
            out.push((oid, value));
            set = set_rest;
        }
        name = rest;
    }
    Some(out)
}

fn anchor_matches(anchor: &TrustAnchor<'_>, root: &PinnedRoot) -> bool {
    let want_oid = match root.attr {
        NameAttr::CommonName => OID_CN,
        NameAttr::OrganizationalUnit => OID_OU,
    };
    name_attributes(anchor.subject.as_ref())
        .map(|attrs| {
            attrs
                .iter()
                .any(|(oid, value)| *oid == want_oid && *value == root.value.as_bytes())
        })
        .unwrap_or(false)
}

/// The trust anchors from `webpki-roots` that match [`DUO_PINNED_ROOTS`].
pub fn pinned_anchors() -> Vec<TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .filter(|anchor| {
            DUO_PINNED_ROOTS
                .iter()
                .any(|root| anchor_matches(anchor, root))
        })
        .cloned()
        .collect()
}

/// The pinned roots that `webpki-roots` does not contain (and that are therefore not trusted
/// by default), for documentation and diagnostics.
pub fn missing_pinned_roots() -> Vec<&'static str> {
    DUO_PINNED_ROOTS
        .iter()
        .filter(|root| {
            !webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .any(|anchor| anchor_matches(anchor, root))
        })
        .map(|root| root.value)
        .collect()
}

/// The default trust store: only the pinned roots.
pub fn default_roots() -> RootCertStore {
    RootCertStore {
        roots: pinned_anchors(),
    }
}

/// Loads the operator's `cafile` (PEM). It replaces the built-in list. A file that cannot be
/// read, that holds no certificate, or whose certificates are all unusable is a setup error:
/// falling back to the built-in list would hide a configuration mistake.
pub fn roots_from_pem_file(path: &Path) -> Result<RootCertStore, DuoError> {
    let shown = path.display();
    let data = std::fs::read(path)
        .map_err(|e| DuoError::Setup(format!("cannot read cafile {shown}: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| DuoError::Setup(format!("cafile {shown} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(DuoError::Setup(format!(
            "cafile {shown} contains no certificate"
        )));
    }
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certs);
    if added == 0 || ignored > 0 {
        // A partly unusable bundle is refused too: the operator meant every certificate in it.
        return Err(DuoError::Setup(format!(
            "cafile {shown}: {ignored} certificate(s) could not be parsed, {added} usable"
        )));
    }
    Ok(store)
}

/// A rustls client configuration over the ring provider, with rustls's safe default protocol
/// versions (TLS 1.2 and 1.3), verifying against `roots` only, without client authentication.
pub fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, DuoError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DuoError::Setup(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// If this fails after a `webpki-roots` update, a pinned root was added or removed
    /// upstream: update the count and the documented list of missing roots.
    #[test]
    fn twelve_of_the_sixteen_pinned_roots_are_in_webpki_roots() {
        assert_eq!(DUO_PINNED_ROOTS.len(), 16);
        assert_eq!(
            pinned_anchors().len(),
            12,
            "found {:?}",
            pinned_anchors().len()
        );
        // Mozilla removed the first two; the last two are not (or no longer) in its list.
        assert_eq!(
            missing_pinned_roots(),
            vec![
                "Starfield Class 2 Certification Authority",
                "DigiCert High Assurance EV Root CA",
                "GTS Root R2",
                "IdenTrust TLS ECC Root CA 2",
            ]
        );
    }

    #[test]
    fn each_found_root_matches_exactly_one_anchor() {
        for root in DUO_PINNED_ROOTS {
            let n = webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .filter(|a| anchor_matches(a, root))
                .count();
            assert!(n <= 1, "{} matched {n} anchors", root.value);
        }
    }

    #[test]
    fn default_roots_exclude_other_mozilla_roots() {
        let total = webpki_roots::TLS_SERVER_ROOTS.len();
        assert!(total > 100, "webpki-roots has {total} roots");
        assert_eq!(default_roots().roots.len(), 12);
    }

    #[test]
    fn name_parser_rejects_truncated_input() {
        assert!(der_tlv(&[0x31, 0x05, 0x00]).is_none());
        assert!(der_tlv(&[0x31, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(name_attributes(&[0x30, 0x00]).is_none());
    }

    #[test]
    fn missing_or_empty_cafile_is_a_setup_error() {
        let dir = std::env::temp_dir().join(format!("duo-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"no certificates here\n").expect("write");
        assert!(matches!(
            roots_from_pem_file(&empty),
            Err(DuoError::Setup(_))
        ));
        assert!(matches!(
            roots_from_pem_file(&dir.join("absent.pem")),
            Err(DuoError::Setup(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_config_builds_with_ring() {
        let config = client_config(default_roots()).expect("config");
        assert!(config.crypto_provider().cipher_suites.len() > 1);
    }
}
