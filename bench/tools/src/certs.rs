//! `certs`: N self-signed ECDSA P-256 certificates, `OUT/I.crt` and `OUT/I.key` (PKCS#8).
//!
//! openssl makes the benchmark's main certificates; this makes the many that rotations
//! and the 10k-host scale run need, in a second instead of a process per certificate.

use std::path::Path;

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::args::{Error, Flags};

pub fn run(flags: &Flags) -> Result<(), Error> {
    let count: usize = flags.number("count", 1)?;
    let pattern = flags.text("name")?;
    let out = Path::new(flags.text("out")?);
    std::fs::create_dir_all(out)?;

    for index in 0..count {
        let name = pattern.replace("{}", &index.to_string());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![name.clone()])?;
        params.distinguished_name.push(DnType::OrganizationName, "Portcullis bench TEST-ONLY");
        params.distinguished_name.push(DnType::CommonName, format!("{name} #{index}"));
        let certificate = params.self_signed(&key)?;
        std::fs::write(out.join(format!("{index}.crt")), certificate.pem())?;
        std::fs::write(out.join(format!("{index}.key")), key.serialize_pem())?;
    }
    Ok(())
}
