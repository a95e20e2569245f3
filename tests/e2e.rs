//! The one integration test binary (so the suite links once). Each module drives real
//! programs (kubectl, ssh, ssh-keygen, script) against real servers on loopback.

mod e2e {
    pub mod approval_store;
    pub mod approvals;
    pub mod backpressure;
    pub mod certificate_forge;
    pub mod certificate_matrix;
    pub mod cli;
    pub mod deploy;
    pub mod dev_command;
    pub mod devcluster_binary;
    pub mod devcluster_kube;
    pub mod devcluster_kubectl;
    pub mod faults;
    pub mod gateway_commands;
    pub mod gateway_process;
    pub mod gateway_refusals;
    pub mod gateway_support;
    pub mod hostile_input;
    pub mod incident;
    pub mod lifetime;
    pub mod limits;
    pub mod observe;
    pub mod port_forward;
    pub mod recordings;
    pub mod review_browser;
    pub mod revocation;
    pub mod s3_server;
    pub mod ssh_requests;
    pub mod store;
    pub mod store_faults;
    pub mod store_support;
    pub mod support;
}
