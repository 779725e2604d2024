//! Password hashing: argon2id on the blocking pool, never more at once than there are cores.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

/// OWASP's minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Hashes and verifies passwords off the async threads.
///
/// The semaphore bounds how many hashes run at once, so a login storm queues here instead of
/// filling the blocking pool and taking every core from the proxy.
#[derive(Debug)]
pub struct Passwords {
    hasher: Argon2<'static>,
    permits: Semaphore,
    /// Verified when the email is unknown, so both failures take the same time.
    dummy_hash: String,
}

/// Hashing failed (only on a broken RNG or parameters: never the user's fault).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl Passwords {
    /// A hasher with OWASP parameters, `concurrency` hashes at most at once.
    pub fn new(concurrency: usize) -> Self {
        let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 params");
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let random: [u8; 16] = rand::random();
        let dummy_hash = hasher
            .hash_password(&random)
            .expect("hashing a random password")
            .to_string();
        release_work_memory();
        Passwords {
            hasher,
            permits: Semaphore::new(concurrency.max(1)),
            dummy_hash,
        }
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `password`, salted afresh.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, HashError> {
        let this = Arc::clone(self);
        self.blocking(move || {
            this.hasher
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| HashError(error.to_string()))
        })
        .await
        .unwrap_or_else(|error| Err(HashError(error)))
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) a dummy is verified so
    /// the answer takes as long as for a real account, and is always false.
    pub async fn verify(self: &Arc<Self>, password: String, hash: Option<String>) -> bool {
        let this = Arc::clone(self);
        self.blocking(move || {
            let (target, real) = match &hash {
                Some(hash) => (hash.as_str(), true),
                None => (this.dummy_hash.as_str(), false),
            };
            let matched = this
                .hasher
                .verify_password(password.as_bytes(), target)
                .is_ok();
            matched && real
        })
        .await
        .unwrap_or(false)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            release_work_memory();
            result
        })
        .await
        .map_err(|e| e.to_string())
    }
}

/// Returns the hash's freed work area (19 MiB) to the OS now. mimalloc, the binary's
/// allocator, would otherwise keep it cached on this blocking thread, and an idle proxy would
/// hold 19 MiB more per thread that ever hashed (measured: 39 MiB idle RSS instead of 20).
fn release_work_memory() {
    // SAFETY: `mi_collect` only walks this thread's mimalloc heap; it is harmless when
    // another global allocator is in use (the heap is then empty).
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_fresh_salts() {
        let passwords = Arc::new(Passwords::new(2));
        let a = passwords.hash("correct horse".into()).await.unwrap();
        let b = passwords.hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash gets its own salt");
        assert!(passwords.verify("correct horse".into(), Some(a)).await);
        assert!(!passwords.verify("wrong horse".into(), Some(b)).await);
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify_even_with_the_dummy_password() {
        let passwords = Arc::new(Passwords::new(1));
        assert!(!passwords.verify("anything".into(), None).await);
        let garbage = Some("not a phc string".to_string());
        assert!(!passwords.verify("anything".into(), garbage).await);
    }
}
