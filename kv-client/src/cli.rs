//! Runs one command and returns the exit code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kv_client::bench::{self, BenchConfig, Protocol, Routing, Stop};
use kv_client::{Client, ClientOptions, Endpoint, Error};
use kv_server::api::{ApiError, Condition, Consistency, ListRequest};
use serde_json::json;

use crate::output::{self, print_error, print_json};
use crate::{BenchArgs, Cli, Command, ConsistencyArg, ProtocolArg, RoutingArg};

/// The flags every command shares.
struct Global {
    endpoints: Vec<Endpoint>,
    json: bool,
    opts: ClientOptions,
}

impl Global {
    /// A client of every endpoint, routing to the leader if `to_leader`.
    fn client(&self, to_leader: bool) -> Result<Client, Error> {
        let opts = ClientOptions {
            prefer_leader: to_leader,
            ..self.opts.clone()
        };
        Client::new(self.endpoints.clone(), opts)
    }

    /// Prints the outcome of a command that has nothing to show: `OK`, or `{"ok": true}`.
    fn ok(&self) {
        if self.json {
            print_json(&json!({"ok": true}));
        } else {
            println!("OK");
        }
    }
}

impl From<ConsistencyArg> for Consistency {
    fn from(c: ConsistencyArg) -> Consistency {
        match c {
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::Serializable => Consistency::Serializable,
        }
    }
}

/// Runs `cli`'s command: 0 ok, 1 not found or condition failed, 2 usage, 3 unavailable,
/// timed out or indeterminate.
pub async fn run(cli: Cli) -> u8 {
    let endpoints = match Endpoint::parse_list(&cli.endpoints) {
        Ok(e) => e,
        Err(e) => {
            print_error(cli.json, &e);
            return e.exit_code();
        }
    };
    let global = Global {
        endpoints,
        json: cli.json,
        opts: ClientOptions {
            timeout: cli.timeout,
            ..ClientOptions::default()
        },
    };
    let result = match cli.command {
        Command::Status => return status(&global).await,
        Command::Health => return health(&global).await,
        Command::Bench(args) => return run_bench(&global, args).await,
        command => one(&global, command).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            print_error(global.json, &e);
            e.exit_code()
        }
    }
}

/// Reads a value argument: `-` means stdin.
fn value_arg(value: OsString) -> Result<Bytes, Error> {
    if value == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Error::InvalidInput(format!("reading the value from stdin: {e}")))?;
        Ok(Bytes::from(buf))
    } else {
        Ok(Bytes::from(value.into_encoded_bytes()))
    }
}

fn not_found(key: &str) -> Error {
    Error::Server(ApiError::not_found(format!("key not found: {key:?}")))
}

/// A command that talks to the cluster through one failing-over client.
async fn one(g: &Global, command: Command) -> Result<(), Error> {
    // A serializable read is served by whichever node it reaches, from its own state: finding
    // the leader would only add round trips, and would take away the choice of node the
    // endpoint order gives. Everything else goes to the leader (see kv_client::client).
    let local_read = matches!(
        command,
        Command::Get {
            consistency: ConsistencyArg::Serializable,
            ..
        } | Command::List {
            consistency: ConsistencyArg::Serializable,
            ..
        }
    );
    let client = g.client(!local_read)?;
    match command {
        Command::Get { key, consistency } => {
            let value = client
                .get_with(key.clone(), consistency.into())
                .await?
                .ok_or_else(|| not_found(&key))?;
            if g.json {
                print_json(&output::item_json(&key, &value));
            } else {
                output::write_raw(&value)
                    .map_err(|e| Error::InvalidInput(format!("writing to stdout: {e}")))?;
            }
        }
        Command::Put { key, value } => {
            let value = value_arg(value)?;
            client.put(key, value).await?;
            g.ok();
        }
        Command::Del { key } => {
            if !client.delete(key.clone()).await? {
                return Err(not_found(&key));
            }
            g.ok();
        }
        Command::Cas {
            key,
            new,
            prev_value,
            prev_exist,
        } => {
            let (condition, failure) = match (prev_value, prev_exist) {
                (Some(v), _) => (
                    Condition::PrevValue(Bytes::from(v.into_encoded_bytes())),
                    format!("condition failed: {key:?} does not hold the --prev-value"),
                ),
                (None, Some(true)) => (
                    Condition::PrevExist(true),
                    format!("condition failed: {key:?} does not exist"),
                ),
                (None, Some(false)) => (
                    Condition::PrevExist(false),
                    format!("condition failed: {key:?} already exists"),
                ),
                // clap requires one of the two.
                (None, None) => {
                    return Err(Error::InvalidInput(
                        "cas needs --prev-value or --prev-exist".into(),
                    ));
                }
            };
            let value = value_arg(new)?;
            if !client.cas(key, value, condition).await? {
                return Err(Error::Server(ApiError::precondition_failed(failure)));
            }
            g.ok();
        }
        Command::List {
            prefix,
            limit,
            after,
            values,
            consistency,
        } => {
            let page = client
                .list(ListRequest {
                    prefix,
                    after,
                    limit,
                    values,
                    consistency: consistency.into(),
                })
                .await?;
            output::print_list(g.json, &page, values);
        }
        Command::Batch { file } => {
            let items = read_batch(&file)?;
            client.batch(items).await?;
            g.ok();
        }
        Command::Members => {
            let members = client.members().await?;
            output::print_members(g.json, &members);
        }
        Command::AddNode { id, addr, learner } => {
            client.add_node(id, addr, learner).await?;
            g.ok();
        }
        Command::PromoteNode { id } => {
            client.promote_node(id).await?;
            g.ok();
        }
        Command::RemoveNode { id } => {
            client.remove_node(id).await?;
            g.ok();
        }
        Command::TransferLeader { id } => {
            client.transfer_leader(id).await?;
            g.ok();
        }
        Command::Status | Command::Health | Command::Bench(_) => {
            unreachable!("handled by run")
        }
    }
    Ok(())
}

/// Reads a batch: a JSON object of string values, from `file` or stdin (`-`).
fn read_batch(file: &str) -> Result<Vec<(String, Bytes)>, Error> {
    let text = if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Error::InvalidInput(format!("reading the batch from stdin: {e}")))?;
        buf
    } else {
        std::fs::read(file)
            .map_err(|e| Error::InvalidInput(format!("reading the batch file {file:?}: {e}")))?
    };
    let from = if file == "-" { "stdin" } else { file };
    // A key given twice takes the later value, as the server does.
    let map: BTreeMap<String, String> = serde_json::from_slice(&text).map_err(|e| {
        Error::InvalidInput(format!(
            "the batch in {from} must be a JSON object of string values: {e}"
        ))
    })?;
    Ok(map.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect())
}

/// Asks every endpoint at once, each through a client of its own, without failover (nor
/// leader routing, which needs a choice of endpoints): for commands about each endpoint.
/// The answers come back in the endpoints' order.
async fn ask_each<T, F, Fut>(g: &Global, ask: F) -> Vec<(Endpoint, Result<T, Error>)>
where
    T: Send + 'static,
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>> + Send + 'static,
{
    let tasks: Vec<_> = g
        .endpoints
        .iter()
        .map(|e| {
            let client =
                Client::new(vec![e.clone()], g.opts.clone()).expect("one endpoint is not empty");
            (e.clone(), tokio::spawn(ask(client)))
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (endpoint, task) in tasks {
        out.push((endpoint, task.await.expect("an endpoint query panicked")));
    }
    out
}

async fn status(g: &Global) -> u8 {
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    let mut failed = false;
    for (endpoint, result) in ask_each(g, |c| async move { c.state().await }).await {
        match result {
            Ok(s) => {
                docs.push(json!({
                    "endpoint": endpoint.to_string(),
                    "id": s.id,
                    "role": s.role,
                    "term": s.term,
                    "leader": s.leader,
                    "commit": s.commit,
                    "applied": s.applied,
                }));
                rows.push(vec![
                    endpoint.to_string(),
                    s.id.to_string(),
                    s.role.to_string(),
                    s.term.to_string(),
                    s.leader.to_string(),
                    s.commit.to_string(),
                    s.applied.to_string(),
                ]);
            }
            Err(e) => {
                failed = true;
                docs.push(json!({"endpoint": endpoint.to_string(), "error": e.to_string()}));
                let mut row = vec![endpoint.to_string()];
                row.extend(std::iter::repeat_n("-".to_owned(), 6));
                row.push(e.to_string());
                rows.push(row);
            }
        }
    }
    if g.json {
        print_json(&json!(docs));
    } else {
        let mut headers = vec![
            "ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED",
        ];
        if failed {
            headers.push("ERROR");
        }
        print!("{}", output::table(&headers, &rows));
    }
    if failed { 3 } else { 0 }
}

async fn health(g: &Global) -> u8 {
    let mut docs = Vec::new();
    let mut lines = String::new();
    let mut all_healthy = true;
    for (endpoint, result) in ask_each(g, |c| async move { c.health().await }).await {
        match result {
            Ok(h) if h.is_healthy() => {
                docs.push(
                    json!({"endpoint": endpoint.to_string(), "health": true, "leader": h.leader}),
                );
                lines.push_str(&format!("{endpoint} is healthy: leader {}\n", h.leader));
            }
            Ok(_) => {
                all_healthy = false;
                docs.push(json!({"endpoint": endpoint.to_string(), "health": false, "leader": 0, "error": "no leader"}));
                lines.push_str(&format!("{endpoint} is unhealthy: no leader\n"));
            }
            Err(e) => {
                all_healthy = false;
                docs.push(json!({"endpoint": endpoint.to_string(), "health": false, "error": e.to_string()}));
                lines.push_str(&format!("{endpoint} is unhealthy: {e}\n"));
            }
        }
    }
    if g.json {
        print_json(&json!(docs));
    } else {
        print!("{lines}");
    }
    if all_healthy { 0 } else { 3 }
}

async fn run_bench(g: &Global, args: BenchArgs) -> u8 {
    let stop = match (args.duration, args.ops) {
        (_, Some(ops)) => Stop::Ops(ops),
        (Some(d), None) => Stop::After(d),
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    let config = BenchConfig {
        endpoints: g.endpoints.clone(),
        protocol: match args.protocol {
            ProtocolArg::Binary => Protocol::Binary,
            ProtocolArg::Http => Protocol::Http,
        },
        routing: match args.routing {
            RoutingArg::Leader => Routing::Leader,
            RoutingArg::Spread => Routing::Spread,
        },
        clients: args.clients,
        connections: args.connections.unwrap_or(g.endpoints.len()),
        stop,
        keyspace: args.keyspace,
        value_size: args.value_size,
        read_ratio: args.read_ratio,
        consistency: args.consistency.into(),
        timeout: g.opts.timeout,
        key_prefix: args.key_prefix,
        seed: args.seed,
    };
    if let Err(e) = bench::check(&config) {
        print_error(g.json, &e);
        return e.exit_code();
    }
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(!g.json && std::io::stderr().is_terminal(), stop);
    let ticker = {
        let bar = bar.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let ops = done.load(Ordering::Relaxed);
                let rate = ops as f64 / start.elapsed().as_secs_f64().max(1e-3);
                match stop {
                    Stop::Ops(_) => bar.set_position(ops),
                    Stop::After(_) => bar.set_position(start.elapsed().as_millis() as u64),
                }
                bar.set_message(format!("{ops} ops, {rate:.0} ops/s"));
            }
        })
    };
    let result = bench::run(&config, done).await;
    ticker.abort();
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            output::print_bench(g.json, &config, &report);
            if report.ok() == 0 {
                let e = Error::Unavailable(format!(
                    "no operation succeeded ({} failed)",
                    report.error_count()
                ));
                if !g.json {
                    print_error(false, &e);
                }
                return 3;
            }
            0
        }
        Err(e) => {
            print_error(g.json, &e);
            e.exit_code()
        }
    }
}

fn progress_bar(visible: bool, stop: Stop) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let len = match stop {
        Stop::Ops(n) => n,
        Stop::After(d) => d.as_millis() as u64,
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}
