//! The `mass` command line. Each subcommand is a thin layer over the library
//! (node) or the SDK (everything that talks to a running node).

mod blob;
mod data;
mod drain;
pub mod exit;
mod models;
mod peers;
mod plot;
mod poll;
mod refs;
mod status;
mod train;
mod tune;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::config::{ConfigError, FileConfig, NodeConfig, Overrides};
use exit::bad_input;

#[derive(Debug, Parser)]
#[command(
    name = "mass",
    version,
    about = "Mass: a peer-to-peer mesh for the whole life of a model",
    after_help = exit::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run and manage a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Write a new pre-shared network key; only nodes holding it can join.
    Keygen {
        /// Where to write the key.
        file: PathBuf,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// The mesh at a glance: peers, datasets, jobs and models.
    Status(status::StatusArgs),
    /// Print the peer table of a node.
    Peers(peers::PeersArgs),
    /// Store and fetch content-addressed blobs.
    #[command(subcommand)]
    Blob(blob::BlobCommand),
    /// Ingest and inspect datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a model on a dataset across the mesh, following its progress.
    Train(train::TrainArgs),
    /// List and inspect training jobs.
    #[command(subcommand)]
    Jobs(train::JobsCommand),
    /// Search hyperparameters across the mesh (a study), following its trials.
    Tune(tune::TuneArgs),
    /// List, inspect, cancel and plot studies.
    #[command(subcommand)]
    Studies(tune::StudiesCommand),
    /// The model registry: versions, promotion, rollback, batch predictions.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Predict rows with a model, from any node.
    Predict(models::PredictArgs),
    /// Read and move refs (mutable names for blobs).
    #[command(subcommand, name = "ref")]
    Ref(refs::RefCommand),
    /// API tokens of a node (run where the node's data dir is).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a shell completion script, e.g. `mass completions bash > /etc/bash_completion.d/mass`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// read, predict, write or admin (each includes the ones before).
        #[arg(long)]
        role: String,
        /// What the token is for, shown by `mass token ls`.
        #[arg(long, default_value = "")]
        name: String,
        /// The node's data directory.
        #[arg(long, env = "MASS_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// List tokens (ids, roles, names; never the tokens).
    Ls {
        /// The node's data directory.
        #[arg(long, env = "MASS_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Revoke a token by id; a running node stops accepting it within a second.
    Revoke {
        id: String,
        /// The node's data directory.
        #[arg(long, env = "MASS_DATA_DIR")]
        data_dir: PathBuf,
    },
}

fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    use mass_protocol::api::Role;
    match command {
        TokenCommand::Create { role, name, data_dir } => {
            let role = Role::parse(&role)
                .ok_or_else(|| exit::bad_input!("--role {role}: expected read, predict, write or admin"))?;
            let (token, entry) = crate::auth::create(&data_dir, role, &name)?;
            eprintln!("token {} ({role}) created; keep it, it is not shown again:", entry.id);
            println!("{token}");
        }
        TokenCommand::Ls { data_dir } => {
            for entry in crate::auth::list(&data_dir)? {
                println!("{}  {:<7}  {}", entry.id, entry.role.to_string(), entry.name);
            }
        }
        TokenCommand::Revoke { id, data_dir } => {
            let entry = crate::auth::revoke(&data_dir, &id)?;
            println!("token {} ({}) revoked", entry.id, entry.role);
        }
    }
    Ok(())
}

/// Which node(s) a client command talks to.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Node URL (repeatable or comma-separated; the next is tried when one is down).
    #[arg(long = "node", env = "MASS_NODE", value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub urls: Vec<String>,
    /// API token, sent as `Authorization: Bearer`.
    #[arg(long, env = "MASS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the API token.
    #[arg(long, env = "MASS_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA certificate to trust for https:// nodes.
    #[arg(long, env = "MASS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

impl NodeArgs {
    pub fn client(&self) -> anyhow::Result<mass_sdk::Client> {
        let mut client = mass_sdk::Client::new(&self.urls)?;
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| bad_input!("cannot read the CA certificate {}: {e}", path.display()))?;
            client = client.with_ca_cert(&pem).with_context(|| format!("CA certificate {}", path.display()))?;
        }
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| bad_input!("cannot read the token file {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        Ok(match token {
            Some(token) => client.with_token(&token)?,
            None => client,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Start a node in the foreground. SIGTERM drains it (hands its blobs,
    /// replicas and jobs to the other nodes) before it exits; SIGINT, or a
    /// second signal, stops it at once.
    Start(StartArgs),
    /// Drain a running node: it hands everything to the other nodes, then
    /// exits. Shows progress until it is gone.
    Drain(drain::DrainArgs),
}

// Every flag can also come from the MASS_* variable shown beside it.
#[derive(Debug, Args)]
#[command(
    after_help = "Each flag can be set by the MASS_* variable shown beside it; the flag wins over the variable, \
and both win over the config file. MASS_LISTEN and MASS_BOOTSTRAP take comma-separated lists; \
MASS_NO_MDNS takes true/false, 1/0, yes/no or on/off."
)]
pub struct StartArgs {
    /// Directory for the node's identity and data (created if missing).
    #[arg(long, env = "MASS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// libp2p address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long, env = "MASS_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// HTTP API address, e.g. 127.0.0.1:8080.
    #[arg(long, env = "MASS_HTTP")]
    pub http: Option<String>,
    /// gRPC prediction service address, e.g. 127.0.0.1:9090 (off by default).
    #[arg(long, env = "MASS_GRPC")]
    pub grpc: Option<String>,
    /// Address of a node to join through (repeatable).
    #[arg(long, env = "MASS_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// Pre-shared key file of a private mesh (see `mass keygen`).
    #[arg(long, env = "MASS_NETWORK_KEY")]
    pub network_key: Option<PathBuf>,
    /// TOML config file; command-line flags override it.
    #[arg(long, env = "MASS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Do not discover peers on the local network with mDNS.
    #[arg(long, env = "MASS_NO_MDNS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_mdns: bool,
    /// Log filter, e.g. "info" or "mass_node=debug" (RUST_LOG wins when set).
    #[arg(long, env = "MASS_LOG")]
    pub log: Option<String>,
}

impl StartArgs {
    /// Reads the config file, applies the flags and validates the result.
    pub fn resolve(self) -> anyhow::Result<NodeConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let overrides = Overrides {
            data_dir: self.data_dir,
            listen: self.listen,
            http: self.http,
            grpc: self.grpc,
            bootstrap: self.bootstrap,
            network_key: self.network_key,
            mdns: self.no_mdns.then_some(false),
            log: self.log,
        };
        let mut config = NodeConfig::resolve(file, overrides)?;
        config.byzantine = crate::jobs::byzantine::from_env().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(config)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Node(NodeCommand::Start(args)) => start_node(args.resolve()?),
        Command::Node(NodeCommand::Drain(args)) => client_runtime()?.block_on(drain::run(args)),
        Command::Keygen { file, force } => {
            let key = crate::net::network_key::generate(&file, force)?;
            println!("wrote network key {} (fingerprint {})", file.display(), key.fingerprint());
            Ok(())
        }
        Command::Status(args) => client_runtime()?.block_on(status::run(args)),
        Command::Peers(args) => client_runtime()?.block_on(peers::run(args)),
        Command::Blob(command) => client_runtime()?.block_on(blob::run(command)),
        Command::Ref(command) => client_runtime()?.block_on(refs::run(command)),
        Command::Models(command) => client_runtime()?.block_on(models::run(command)),
        Command::Predict(args) => client_runtime()?.block_on(models::predict(args)),
        Command::Data(command) => client_runtime()?.block_on(data::run(command)),
        Command::Train(args) => client_runtime()?.block_on(train::train(args)),
        Command::Jobs(command) => client_runtime()?.block_on(train::jobs(command)),
        Command::Tune(args) => client_runtime()?.block_on(tune::tune(args)),
        Command::Studies(command) => client_runtime()?.block_on(tune::studies(command)),
        Command::Token(command) => token_command(command),
        Command::Completions { shell } => {
            completions(shell, &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Writes the completion script of `shell` for `mass`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "mass", out);
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn start_node(config: NodeConfig) -> anyhow::Result<()> {
    init_tracing(&config.log);
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts")
    });
    let result = system.block_on(async { crate::node::run(config, stop_signals()).await });
    if result.is_err() {
        // A start that fails after some actors were spawned (an unreachable
        // bootstrap peer) can leave one not yet polled; dropping the system
        // polls it once, outside the runtime, and its first timer panicked
        // ("no reactor running"). The process ends with the error next, and
        // the store is crash-safe, so the system is left as it is.
        std::mem::forget(system);
    }
    result?;
    Ok(())
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Every SIGTERM (drain, then stop) and SIGINT (stop now), in order.
fn stop_signals() -> tokio::sync::mpsc::UnboundedReceiver<crate::node::Stop> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::spawn(async move {
        loop {
            let stop = tokio::select! {
                _ = int.recv() => crate::node::Stop::Now,
                _ = term.recv() => crate::node::Stop::Drain,
            };
            if tx.send(stop).is_err() {
                return;
            }
        }
    });
    rx
}
