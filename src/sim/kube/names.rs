//! Deterministic generated names and addresses.

/// The alphabet Kubernetes uses for generated name suffixes (no vowels).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A suffix of `len` characters derived from `seed` and `salt`.
pub fn suffix(seed: &str, salt: u64, len: usize) -> String {
    let mut x = splitmix(fnv(seed) ^ splitmix(salt));
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        out.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
        x = splitmix(x);
    }
    out
}

/// The pod-template-hash of a Deployment's ReplicaSet.
pub fn template_hash(deployment: &str) -> String {
    suffix(deployment, 0, 10)
}

/// A pod IP from the cluster CIDR (10.244.0.0/16) for the `n`th pod.
pub fn pod_ip(n: u64) -> String {
    format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_deterministic_and_distinct() {
        assert_eq!(suffix("web", 1, 5), suffix("web", 1, 5));
        assert_ne!(suffix("web", 1, 5), suffix("web", 2, 5));
        assert_eq!(suffix("web", 1, 5).len(), 5);
        assert!(template_hash("web").bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(pod_ip(0), "10.244.0.2");
    }
}
