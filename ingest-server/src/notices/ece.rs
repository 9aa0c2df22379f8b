//! Message encryption for Web Push (RFC 8291) in the `aes128gcm` content
//! coding (RFC 8188), with ring: ECDH on P-256, HKDF-SHA256, AES-128-GCM.
//!
//! Why: a push message crosses the browser vendor's push service; only
//! the subscribed browser, which holds the private key behind `p256dh` and
//! the `auth` secret, may read the notice. Each message uses a fresh
//! ephemeral key pair and a fresh salt, so no two messages share a content
//! key.
//!
//! The steps (RFC 8291 §3.4, RFC 8188 §2):
//!
//! ```text
//! ecdh_secret = ECDH(as_private, ua_public)
//! PRK_key     = HKDF-Extract(salt = auth_secret, IKM = ecdh_secret)
//! IKM         = HKDF-Expand(PRK_key, "WebPush: info" 0x00 ua_public as_public, 32)
//! PRK         = HKDF-Extract(salt, IKM)
//! CEK         = HKDF-Expand(PRK, "Content-Encoding: aes128gcm" 0x00, 16)
//! NONCE       = HKDF-Expand(PRK, "Content-Encoding: nonce" 0x00, 12)
//! body        = salt(16) rs(4) idlen(1)=65 as_public(65)
//!               AES-128-GCM(CEK, NONCE, plaintext 0x02 padding…)
//! ```
//!
//! One record only: the notice is far below the 4096-byte record size
//! that push services accept.

use ring::rand::SecureRandom;
use ring::{aead, agreement, hkdf};

/// The record size written in the header (the most push services take).
pub const RECORD_SIZE: u32 = 4096;
/// The most plaintext one record holds (record − tag − delimiter).
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 16 - 1;

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) -> Result<(), String> {
    prk.expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| "HKDF expand failed".to_string())
}

/// Encrypts `plaintext` for the browser whose subscription has `ua_public`
/// (65-byte uncompressed P-256 point) and `auth_secret` (16 bytes).
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, String> {
    let as_private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, rng)
        .map_err(|_| "cannot make an ephemeral P-256 key".to_string())?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)
        .map_err(|_| "no random salt".to_string())?;
    encrypt_with(plaintext, ua_public, auth_secret, as_private, salt, 0)
}

/// [`encrypt`] with a given ephemeral key, salt and number of padding
/// bytes (tests reproduce RFC 8291's example with it).
pub fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    as_private: agreement::EphemeralPrivateKey,
    salt: [u8; 16],
    padding: usize,
) -> Result<Vec<u8>, String> {
    if ua_public.len() != 65 || ua_public[0] != 4 {
        return Err("p256dh is not an uncompressed P-256 point (65 bytes)".into());
    }
    if auth_secret.len() != 16 {
        return Err("auth is not 16 bytes".into());
    }
    if plaintext.len() + padding > MAX_PLAINTEXT {
        return Err(format!(
            "message of {} bytes is over the {MAX_PLAINTEXT} one record holds",
            plaintext.len() + padding
        ));
    }
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| "cannot compute the ephemeral public key".to_string())?;
    let as_public = as_public.as_ref().to_vec();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let mut ikm = [0u8; 32];
    agreement::agree_ephemeral(as_private, &peer, |ecdh_secret| {
        let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth_secret).extract(ecdh_secret);
        expand(
            &prk_key,
            &[b"WebPush: info\0", ua_public, &as_public],
            &mut ikm,
        )
    })
    .map_err(|_| "p256dh is not a point on P-256".to_string())??;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let mut cek = [0u8; 16];
    expand(&prk, &[b"Content-Encoding: aes128gcm\0"], &mut cek)?;
    let mut nonce = [0u8; 12];
    expand(&prk, &[b"Content-Encoding: nonce\0"], &mut nonce)?;

    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| "bad CEK".to_string())?,
    );
    // The only record is the last: delimiter 0x02, then zero padding.
    let mut record = Vec::with_capacity(plaintext.len() + 1 + padding + 16);
    record.extend_from_slice(plaintext);
    record.push(2);
    record.resize(plaintext.len() + 1 + padding, 0);
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::empty(),
        &mut record,
    )
    .map_err(|_| "AES-GCM failed".to_string())?;

    let mut out = Vec::with_capacity(21 + as_public.len() + record.len());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(as_public.len() as u8);
    out.extend_from_slice(&as_public);
    out.extend_from_slice(&record);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn b(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    /// RFC 8291, Appendix A: the worked example, byte for byte.
    #[test]
    #[allow(deprecated)]
    fn reproduces_rfc8291_example() {
        let as_private_bytes = b("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw");
        let fixed = ring::test::rand::FixedSliceRandom {
            bytes: &as_private_bytes,
        };
        let as_private =
            agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &fixed).unwrap();
        assert_eq!(
            B64.encode(as_private.compute_public_key().unwrap().as_ref()),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
        let salt: [u8; 16] = b("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body = encrypt_with(
            b"When I grow up, I want to be a watermelon",
            &b("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"),
            &b("BTBZMqHH6r4Tts7J_aSIgg"),
            as_private,
            salt,
            0,
        )
        .unwrap();
        assert_eq!(
            B64.encode(body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn refuses_bad_keys_and_long_messages() {
        let rng = ring::rand::SystemRandom::new();
        let ua = b(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        );
        let auth = b("BTBZMqHH6r4Tts7J_aSIgg");
        assert!(encrypt(b"x", &ua[..64], &auth, &rng).is_err());
        assert!(encrypt(b"x", &ua, &auth[..15], &rng).is_err());
        let mut off_curve = ua.clone();
        off_curve[64] ^= 1;
        assert!(encrypt(b"x", &off_curve, &auth, &rng).is_err());
        assert!(encrypt(&vec![b'a'; MAX_PLAINTEXT + 1], &ua, &auth, &rng).is_err());
        let one = encrypt(b"x", &ua, &auth, &rng).unwrap();
        let two = encrypt(b"x", &ua, &auth, &rng).unwrap();
        assert_eq!(one.len(), 16 + 4 + 1 + 65 + 1 + 1 + 16);
        assert_ne!(one, two, "fresh key and salt each time");
    }
}
