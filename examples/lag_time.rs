//! Application-level round-trip time: the server pings every client on a 2 Hz tick, the client
//! answers, the server prints the RTT per client, beside two figures the library measures by
//! itself: the heartbeat RTT (`ConnStats::rtt`, from `Config::heartbeat`'s pings, which every
//! repod client answers unasked) and the kernel's smoothed RTT of the TCP connection
//! (`TCP_INFO`, which needs nothing from the client at all).
//!
//! The three differ on purpose: the kernel measures the network alone; the heartbeat and the
//! seed's own ping include the time the client took to pump (up to one 10 ms frame here).
//!
//! ```text
//! cargo run --example lag_time
//! ```

use std::time::{Duration, Instant};

use repod::{
    msg, ChannelHandler, Client, ClientRoutes, Config, Listener, Routes, Server, ServerCtx,
    ServerHandler,
};

#[derive(Default)]
struct Pinged {
    rtts: Vec<Duration>,
}

/// Server state: the clock that ping timestamps are measured against.
struct Clock {
    start: Instant,
}

impl ChannelHandler for Pinged {
    type Server = Clock;
    fn routes(r: &mut Routes<Self>) {
        r.on("pong", |me, ctx, m| {
            let sent = Duration::from_micros(m.u64("t")?);
            let rtt = ctx.server().start.elapsed().saturating_sub(sent);
            me.rtts.push(rtt);
            let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
            let heartbeat = ctx.stats().rtt.map_or("none yet".into(), ms);
            let kernel = ctx.kernel_rtt().map_or_else(|e| e.to_string(), ms);
            println!(
                "[server] {} rtt {} (heartbeat {heartbeat}, kernel {kernel})",
                ctx.addr(),
                ms(rtt)
            );
            Ok(())
        });
    }
}

impl ServerHandler<Pinged> for Clock {
    fn on_tick(&mut self, ctx: &mut ServerCtx<'_, Pinged>) {
        let t = self.start.elapsed().as_micros() as u64;
        ctx.send_to_all(&msg! { "action": "ping", "t": t });
    }
}

struct LagClient {
    pongs: u32,
}

impl Listener for LagClient {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("ping", |me, net, m| {
            // Echo the server's own timestamp: no clock sync needed.
            net.send(&msg! { "action": "pong", "t": m.field("t")? });
            me.pongs += 1;
            Ok(())
        });
    }
}

fn main() -> std::io::Result<()> {
    let server = Server::<Pinged>::bind(
        "127.0.0.1:0",
        Clock {
            start: Instant::now(),
        },
    )?
    .tick_rate(2.0)
    .config(Config::default().heartbeat(Some(Duration::from_millis(250))))
    .start_background()?;
    let mut client = Client::connect(server.local_addr(), LagClient { pongs: 0 })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.listener().pongs < 5 && Instant::now() < deadline {
        client.pump_timeout(Duration::from_millis(10));
    }
    client.pump_timeout(Duration::from_millis(100));
    server.stop_and_join()?;
    Ok(())
}
