//! The one integration test binary (so the suite links once). Each module drives real
//! programs (kubectl, ssh, ssh-keygen, script) against real servers on loopback.

mod e2e {
    pub mod devcluster_binary;
    pub mod devcluster_kube;
    pub mod devcluster_kubectl;
    pub mod support;
}
