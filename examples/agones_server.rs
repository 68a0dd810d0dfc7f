//! A repod game server run by [Agones](https://agones.dev): one process per match, which tells
//! the Agones SDK sidecar when it is ready, that it is healthy, how many players it has, and
//! when it is done.
//!
//! ```text
//! cargo run --example agones_server --features agones -- [HOST:PORT] [--drain-secs N]
//! ```
//!
//! Defaults: `0.0.0.0:7654` (in a container the port must be reachable from outside it) and a
//! 20 s drain. The game is small: `echo` is answered as `echo_reply`, `chat` is sent to every
//! player.
//!
//! The SDK is a gRPC client of the sidecar on `localhost:$AGONES_SDK_GRPC_PORT` (default 9357).
//! Without Kubernetes, run the SDK server in local mode, which logs every call it gets:
//!
//! ```text
//! ./sdk-server.linux.amd64 --local        # from agonessdk-server-VERSION.zip (Agones releases)
//! cargo run --example agones_server --features agones
//! ```
//!
//! What it does, in order:
//!
//! 1. binds and starts the game server on its own thread (`start_background`);
//! 2. connects to the sidecar (giving up after 10 s with a message saying how to run one) and
//!    calls `ready()`: the port is bound already, so players can come;
//! 3. every second: a health ping if the game's reactor turned within the last 2 s, so a game
//!    loop that is stuck (a handler that blocks, a busy loop, a panic in a server hook) stops
//!    the pings and Agones marks the server `Unhealthy` and replaces it; and the label `players`
//!    set to the number of connected players, when it changed;
//! 4. SIGTERM (Kubernetes deleting the pod: a fleet scaled down or rolled out, a node
//!    drained) drains the server: no new players, the connected ones play on until they leave
//!    or `--drain-secs` pass; Ctrl-C stops at once;
//! 5. once the server has stopped, `shutdown()` tells Agones the game server is done.
//!
//! Players are reported as a label (`agones.dev/sdk-players` on the GameServer, as the sidecar
//! prefixes SDK labels): a stable SDK call that works on any Agones install and needs nothing
//! declared in the spec, so it can select servers in a `GameServerAllocation` and shows in
//! `kubectl get gs -o yaml`. Each change is a write to the Kubernetes API, hence at most one a
//! second. The alpha player tracking (`sdk.alpha().player_connect(id)`) needs the
//! `PlayerTracking` feature gate, which is off by default, costs a call per join and per leave,
//! and is to be replaced by Counters and Lists. With a counter declared in the spec
//! (`counters: {players: {capacity: 16}}`), `sdk.beta().set_counter_count("players", n)` in place
//! of the label lets allocation pick servers by the room they have left.
//!
//! # In a fleet
//!
//! ```yaml
//! apiVersion: agones.dev/v1
//! kind: Fleet
//! metadata:
//!   name: repod-game
//! spec:
//!   replicas: 3
//!   template:
//!     spec:
//!       ports:
//!         - name: default
//!           containerPort: 7654     # HOST:PORT below; players connect to status.address and
//!           protocol: TCP           # status.ports[0].port (a host port, with portPolicy Dynamic)
//!       health:
//!         initialDelaySeconds: 5    # from container start to the first required ping
//!         periodSeconds: 5          # a ping arrives every second while the game loop runs...
//!         failureThreshold: 3       # ...so a game loop stuck for about 15 s means Unhealthy
//!       template:
//!         spec:
//!           # Longer than the drain, plus up to 5 s for slow players to take their last
//!           # bytes (Config::linger), plus a margin: past it the kubelet sends SIGKILL.
//!           terminationGracePeriodSeconds: 30
//!           containers:
//!             - name: game
//!               image: registry.example.com/repod-game:latest
//!               args: ["0.0.0.0:7654", "--drain-secs", "20"]
//! ```
//!
//! A fleet scales down and rolls out by deleting game servers that are not `Allocated`; an
//! `Allocated` one (a match in progress) gets SIGTERM only when it is deleted itself (with its
//! fleet, or alone) or its node is drained, which is what the drain is for. A match that ends
//! by itself would stop its server (`ServerCtx::stop`): this program then calls `shutdown()`
//! just the same, and Agones deletes the pod.

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agones::Sdk;
use repod::{msg, ChannelHandler, Routes, Server, ServerCtx, ServerHandler};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::error::TrySendError;

/// How long to wait for the sidecar. In a pod it may start a little after the game server.
const SDK_CONNECT: Duration = Duration::from_secs(10);
/// Longest wait for one SDK call: the loop that makes them also sends the health pings.
const SDK_CALL: Duration = Duration::from_secs(2);
/// A reactor that has not turned for this long is stuck: no health ping.
const STALL: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Player;

/// The match.
struct Match;

impl ServerHandler<Player> for Match {
    fn on_drain(&mut self, ctx: &mut ServerCtx<'_, Player>, deadline: Instant) {
        // The moment to end the match well: save progress, tell clients to find another one.
        let within = deadline.saturating_duration_since(Instant::now()).as_secs();
        ctx.send_to_all(&msg! { "action": "server_closing", "within_secs": within });
    }
}

impl ChannelHandler for Player {
    type Server = Match;

    fn routes(r: &mut Routes<Self>) {
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
        r.on("chat", |_, ctx, m| {
            ctx.send_to_all(&msg! { "action": "chat", "text": m.str("text")? });
            Ok(())
        });
    }
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agones_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Failure> {
    let (addr, drain) = parse_args()?;
    // The game's fixed-rate tick (a real game simulates in `on_tick`). It also has the reactor
    // turn on schedule from the start: an idle reactor with no tick publishes its first turn
    // only when something happens, and would look stalled until its first player.
    let server = Server::<Player>::bind(addr.as_str(), Match)?
        .tick_rate(20.0)
        .start_background()?;
    let handle = server.handle();
    println!("listening on {}", server.local_addr());

    // Signals are caught from here on: a SIGTERM while connecting still drains.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let port = std::env::var("AGONES_SDK_GRPC_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9357);
    // Dropping `server` on an early return stops the game server too.
    let mut sdk = match tokio::time::timeout(SDK_CONNECT, Sdk::new(Some(port), None)).await {
        Ok(Ok(sdk)) => sdk,
        Ok(Err(e)) => return Err(no_sidecar(port, &chain(&e))),
        Err(_) => {
            return Err(no_sidecar(
                port,
                &format!("no answer within {SDK_CONNECT:?}"),
            ))
        }
    };
    bounded("ready", sdk.ready()).await?;
    println!("Agones: ready");

    let mut health = sdk.health_check();
    let mut reported_players = None;
    let mut stalled = false;
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every_second.tick() => {}
            _ = sigterm.recv() => {
                println!("SIGTERM: draining for at most {drain:?}");
                handle.drain(drain);
            }
            _ = sigint.recv() => {
                println!("Ctrl-C: stopping");
                handle.stop();
            }
        }
        let vitals = handle.health();
        if vitals.stopped {
            break;
        }
        // The reactor turns at least once a second, players or not, and publishes when. Every
        // handler and the tick (`tick_rate`) run on its thread, so a game loop stuck anywhere
        // stops its turns too; turns also go on after a stop while the last bytes are flushed,
        // when ticks no longer run, so they do not raise a false alarm then.
        if vitals.is_alive(STALL) {
            if stalled {
                stalled = false;
                eprintln!("game loop turning again: health pings resume");
            }
            match health.try_send(()) {
                Ok(()) => {}
                // Pings are not being taken (a stuck sidecar): waiting would not help.
                Err(TrySendError::Full(())) => {}
                Err(TrySendError::Closed(())) => {
                    // The health stream to the sidecar ended (it restarted): open another.
                    eprintln!("Agones: health stream closed; reopening it");
                    health = sdk.health_check();
                }
            }
        } else if !stalled {
            stalled = true;
            eprintln!(
                "game loop stalled (last turn {:?} ago): no health pings",
                vitals.since_last_turn
            );
        }
        if reported_players != Some(vitals.connections) {
            let label = sdk.set_label("players", vitals.connections.to_string());
            match bounded("set_label", label).await {
                Ok(()) => reported_players = Some(vitals.connections),
                // Not fatal: tried again next second.
                Err(e) => eprintln!("{e}"),
            }
        }
    }

    // The reactor has stopped; its thread is returning.
    if let Err(e) = server.join() {
        eprintln!("game server: {e}");
    }
    // When the pod is being deleted the sidecar may be gone already; the pod goes either way.
    match bounded("shutdown", sdk.shutdown()).await {
        Ok(()) => println!("Agones: shutdown"),
        Err(e) => eprintln!("{e}"),
    }
    Ok(())
}

/// Runs an SDK call for at most [`SDK_CALL`].
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = agones::errors::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(SDK_CALL, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("Agones: {what}: {}", chain(&e))),
        Err(_) => Err(format!("Agones: {what}: no answer within {SDK_CALL:?}")),
    }
}

/// An error and its causes: the SDK's own messages ("rpc failure") leave out what failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

fn no_sidecar(port: u16, why: &str) -> Failure {
    format!(
        "cannot reach the Agones SDK server on localhost:{port} ({why}).\n\
         In Kubernetes, Agones runs it beside this container. To run locally, start it in \
         local mode first:\n    ./sdk-server.linux.amd64 --local\n\
         (from agonessdk-server-VERSION.zip in the Agones releases; it listens on 9357, \
         or set AGONES_SDK_GRPC_PORT to its --grpc-port)"
    )
    .into()
}

fn parse_args() -> Result<(String, Duration), Failure> {
    const USAGE: &str = "usage: agones_server [HOST:PORT] [--drain-secs N]";
    let (mut addr, mut drain_secs) = (None, 20u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--drain-secs" => {
                let n = args.next().ok_or(USAGE)?;
                drain_secs = n
                    .parse()
                    .map_err(|e| format!("bad --drain-secs {n:?}: {e}"))?;
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown flag {flag}\n{USAGE}").into())
            }
            _ if addr.is_none() => addr = Some(arg),
            _ => return Err(USAGE.into()),
        }
    }
    let addr = addr.unwrap_or_else(|| "0.0.0.0:7654".into());
    Ok((addr, Duration::from_secs(drain_secs)))
}
