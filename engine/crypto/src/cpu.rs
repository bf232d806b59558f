//! Run-time CPU feature detection for reporting which code path runs.
//!
//! Nothing here selects code: ring and the RustCrypto crates dispatch on
//! their own. These functions mirror their dispatch rules so that
//! `Backend::describe` tells an operator what actually executes, and they
//! read CPUID at run time so no CPU floor is compiled in.

/// The widest SIMD level this CPU (and OS) offers, independent of backend:
/// `"avx512"` (AVX-512F and AVX-512VL), `"avx2"`, `"ssse3"` or `"generic"`
/// on x86_64; `"neon"` or `"generic"` on aarch64; `"generic"` elsewhere.
///
/// Neither AEAD backend has an AVX-512 ChaCha20-Poly1305 path, so this can
/// say more than [`crate::Backend::describe`] does; it is reported so that
/// benchmark figures can be tied to the machine they ran on.
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            "avx512"
        } else if std::arch::is_x86_feature_detected!("avx2") {
            "avx2"
        } else if std::arch::is_x86_feature_detected!("ssse3") {
            "ssse3"
        } else {
            "generic"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            "neon"
        } else {
            "generic"
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "generic"
    }
}

/// Whether the CPU has the instructions ring's fast AES-GCM needs: AES-NI
/// and PCLMULQDQ on x86_64, AES and PMULL on aarch64.
pub(crate) fn has_aes_clmul() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("aes") && has!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        has!("aes") && has!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The ChaCha20-Poly1305 path ring 0.17 takes on this CPU.
///
/// x86_64: the fused BoringSSL assembly needs SSE4.1 and uses its AVX2
/// variant when AVX2 and BMI2 are both present; without SSE4.1 ring runs
/// ChaCha20 (SSSE3 for inputs over 128 bytes) and Poly1305 separately.
/// aarch64: the fused NEON assembly.
pub(crate) fn ring_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("sse4.1") && has!("avx2") && has!("bmi2") {
            "chacha20-poly1305/ring/avx2"
        } else if has!("sse4.1") {
            "chacha20-poly1305/ring/sse4.1"
        } else if has!("ssse3") {
            "chacha20-poly1305/ring/ssse3"
        } else {
            "chacha20-poly1305/ring/generic"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            "chacha20-poly1305/ring/neon"
        } else {
            "chacha20-poly1305/ring/generic"
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "chacha20-poly1305/ring/generic"
    }
}

/// The path the RustCrypto `chacha20` 0.9 / `poly1305` 0.8 crates take.
///
/// On x86 both crates probe AVX2 at run time (via `cpufeatures`) and run
/// their AVX2 code when the CPU has it. Only a global `+avx2` build makes
/// that code fast: poly1305's AVX2 arithmetic lives in operator-trait impls
/// that cannot carry `#[target_feature]`, so without the global flag its
/// `_mm256_*` intrinsics become out-of-line calls (seen in `perf`: ~6x ring's
/// time at 32 B). Hence `avx2` (global flag) versus `avx2-noinline` (run-time
/// detection only). Without AVX2, `chacha20` uses SSE2 and `poly1305` its
/// portable code (`sse2`). Elsewhere both are portable (`soft`) unless built
/// with `--cfg chacha20_force_neon`, which this crate cannot observe.
#[cfg(feature = "rustcrypto")]
pub(crate) fn rustcrypto_path() -> &'static str {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        if cfg!(target_feature = "avx2") {
            "chacha20-poly1305/rustcrypto/avx2"
        } else if std::arch::is_x86_feature_detected!("avx2") {
            "chacha20-poly1305/rustcrypto/avx2-noinline"
        } else if cfg!(target_feature = "sse2") || std::arch::is_x86_feature_detected!("sse2") {
            "chacha20-poly1305/rustcrypto/sse2"
        } else {
            "chacha20-poly1305/rustcrypto/soft"
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        "chacha20-poly1305/rustcrypto/soft"
    }
}
