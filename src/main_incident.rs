//! `podgate incident open|list|close`: read the kubeconfig and files the command names,
//! then call `podgate::incident`.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use podgate::cli::{IncidentCommand, IncidentStoreArgs, KubeArgs, OpenArgs};
use podgate::incident::{self, cluster};
use russh::keys::ssh_key::LineEnding;

pub async fn run(command: IncidentCommand) -> Result<u8> {
    match command {
        IncidentCommand::Open(args) => open(*args).await,
        IncidentCommand::List { kube } => {
            let (client, _) = connect(&kube).await?;
            let rows = cluster::list(&client, &kube.gateway_namespace).await?;
            if rows.is_empty() {
                eprintln!(
                    "no incident gateways in namespace {}",
                    kube.gateway_namespace
                );
            } else {
                print!("{}", incident::render_list(&rows, SystemTime::now()));
            }
            Ok(0)
        }
        IncidentCommand::Close { id, kube } => {
            incident::check_id(&id)?;
            let (client, _) = connect(&kube).await?;
            let deleted = cluster::close(&client, &id).await?;
            if deleted.is_empty() {
                println!("incident {id}: nothing to delete");
            }
            for line in deleted {
                println!("{line}");
            }
            Ok(0)
        }
    }
}

/// The kubeconfig the kubectl way (`--kubeconfig`, else `$KUBECONFIG`, else
/// `~/.kube/config`), and the chosen context's cluster name.
fn kubeconfig(args: &KubeArgs) -> Result<(Kubeconfig, Option<String>)> {
    let kc = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .with_context(|| format!("cannot read kubeconfig {}", path.display()))?,
        None => Kubeconfig::read()
            .context("cannot read the kubeconfig ($KUBECONFIG or ~/.kube/config)")?,
    };
    let context = args.context.clone().or(kc.current_context.clone());
    let cluster = kc
        .contexts
        .iter()
        .find(|c| Some(&c.name) == context.as_ref())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    Ok((kc, cluster))
}

/// A client for the chosen context. Built from the kubeconfig alone: environment debug
/// overrides do not change where it points.
async fn connect(args: &KubeArgs) -> Result<(kube::Client, Option<String>)> {
    let (kc, cluster) = kubeconfig(args)?;
    let opts = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .context("cannot use the kubeconfig")?;
    let client = kube::Client::try_from(config).context("cannot make a Kubernetes client")?;
    Ok((client, cluster))
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn store_spec(args: &IncidentStoreArgs) -> Option<incident::StoreSpec> {
    Some(incident::StoreSpec {
        url: args.store.clone()?,
        endpoint: args.location.store_endpoint.clone(),
        region: args.location.store_region.clone(),
        path_style: args.location.store_path_style,
        allow_http: args.location.store_allow_http,
        secret: args.store_secret.clone(),
    })
}

async fn open(args: OpenArgs) -> Result<u8> {
    incident::check_id(&args.id)?;
    // The store is checked before any file is read or the cluster is called.
    if let Some(store) = store_spec(&args.store) {
        incident::store::check(&store, &args.id)?;
    }
    let policy = args
        .policy
        .as_deref()
        .map(|p| read(p, "policy"))
        .transpose()?;
    let given_ca = args
        .ca_pub
        .as_deref()
        .map(|p| read(p, "user CA key"))
        .transpose()?;
    let (client, context_cluster) = if args.dry_run {
        let cluster = match &args.cluster {
            Some(_) => None,
            None => kubeconfig(&args.kube)?.1,
        };
        (None, cluster)
    } else {
        let (client, cluster) = connect(&args.kube).await?;
        (Some(client), cluster)
    };
    let Some(cluster_name) = args.cluster.clone().or(context_cluster) else {
        bail!("no --cluster given and the kubeconfig context names no cluster");
    };
    let gateway_ns = &args.kube.gateway_namespace;
    let ca_keys = match (given_ca, &client) {
        (Some(text), _) => text,
        (None, None) => bail!("--dry-run needs --ca-pub (it makes no cluster call)"),
        (None, Some(client)) => cluster::installed_ca_keys(client, gateway_ns)
            .await?
            .with_context(|| {
                format!(
                    "no --ca-pub given and no ConfigMap labelled {}=true with {} in namespace {gateway_ns}",
                    cluster::USER_CA_LABEL,
                    incident::CA_FILE
                )
            })?,
    };
    let existing = match &client {
        Some(client) => cluster::existing_host_key(client, gateway_ns, &args.id).await?,
        None => None,
    };
    let host_key = match existing {
        Some(text) => russh::keys::PrivateKey::from_openssh(&text)
            .context("the incident's host key Secret holds no valid key")?,
        None => podgate::cert::new_ed25519(),
    };
    let spec = incident::Spec {
        id: args.id.clone(),
        namespaces: args.namespaces.clone(),
        ttl: args.ttl,
        ca_keys,
        policy,
        group: args.group.clone(),
        role: args.role.clone(),
        service_type: args.service_type,
        cluster: cluster_name,
        image: args.image.clone(),
        gateway_namespace: gateway_ns.clone(),
        host_key: host_key.to_openssh(LineEnding::LF)?.to_string(),
        store: store_spec(&args.store),
        service_account_annotations: args
            .store
            .service_account_annotations
            .iter()
            .cloned()
            .collect(),
        now: SystemTime::now(),
    };
    let objects = incident::build(&spec)?;
    let Some(client) = client else {
        print!("{}", incident::to_yaml(&objects)?);
        return Ok(0);
    };
    for line in cluster::open(&client, &args.id, &objects).await? {
        println!("{line}");
    }
    let fingerprint = host_key
        .public_key()
        .fingerprint(russh::keys::HashAlg::Sha256);
    println!(
        "incident {}: gateway pod {}/{}, expires in {}",
        args.id,
        gateway_ns,
        incident::base_name(&args.id),
        humantime::format_duration(args.ttl)
    );
    println!(
        "ssh endpoint: {}",
        cluster::endpoint(&client, &objects).await?
    );
    println!("host key: {fingerprint} (ED25519)");
    if let Some(store) = &spec.store {
        let credentials = match &store.secret {
            Some(name) => format!("Secret {gateway_ns}/{name}"),
            None => "the ServiceAccount's workload identity".to_owned(),
        };
        println!(
            "recordings: {} (credentials: {credentials})",
            incident::store::incident_url(store, &args.id)?
        );
    }
    let groups = match &args.policy {
        None => format!(" -O extension:groups@podgate={}", args.group),
        Some(_) => String::new(),
    };
    println!(
        "certificates need: -O critical:incident@podgate={} -O critical:cluster@podgate={}{groups}",
        args.id, spec.cluster
    );
    Ok(0)
}
