//! `cdot-flow-replay`: sends a pre-built flow export (IPFIX or NetFlow v9, softflowd's
//! templates, many distinct flow keys) at a steady rate of flow records per second, every
//! datagram to each destination, so that two collectors receive the same export in the
//! same run. Exporters are several local source addresses, each with several observation
//! domains. Prints what it sent as `key=value` on one line.
#![forbid(unsafe_code)]

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use cdot_collector::flow::synth::{self, Builder, Flow};
use clap::{Parser, ValueEnum};

/// Template id of the data records.
const TEMPLATE_ID: u16 = 256;
/// How often templates are sent again (an exporter's template refresh).
const TEMPLATE_EVERY: Duration = Duration::from_secs(1);
/// Sleep when ahead of schedule: short, so that sending stays steady within a millisecond.
const IDLE: Duration = Duration::from_micros(200);

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Version {
    Ipfix,
    V9,
}

/// Replays a synthetic flow export at a steady rate.
#[derive(Debug, Parser)]
#[command(name = "cdot-flow-replay", version, about)]
struct Args {
    /// Collector to send to; repeat it to send every datagram to each one.
    #[arg(long = "to", required = true)]
    to: Vec<SocketAddr>,
    /// Flow records per second (to each destination).
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Exporter source addresses, one socket each (every 127.x.y.z is local on Linux).
    #[arg(long = "exporter", default_values = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"])]
    exporters: Vec<IpAddr>,
    /// Observation domains (v9 source ids) per exporter.
    #[arg(long, default_value_t = 2)]
    domains: u32,
    /// Flow records per datagram.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=1000))]
    records: u16,
    /// Distinct flow keys (source, destination, protocol, ports) cycled through.
    #[arg(long, default_value_t = 240_000)]
    keys: u32,
    /// Export protocol.
    #[arg(long, value_enum, default_value = "ipfix")]
    version: Version,
}

/// One pre-built data datagram.
struct Datagram {
    bytes: Vec<u8>,
    flow_bytes: u64,
}

/// A stream of one exporter socket and observation domain.
struct Stream {
    socket: usize,
    domain: u32,
    /// Records (IPFIX) or datagrams (v9) sent so far: the next sequence number.
    sequence: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0 && args.duration > 0.0,
        "rate and duration must be positive"
    );
    anyhow::ensure!(
        !args.exporters.is_empty() && args.domains > 0,
        "need exporters and domains"
    );
    let (version, fields) = match args.version {
        Version::Ipfix => (synth::Version::Ipfix, synth::SOFTFLOWD_IPFIX_V4),
        Version::V9 => (synth::Version::V9, synth::SOFTFLOWD_V9_V4),
    };
    let per = u32::from(args.records);
    let mut pool: Vec<Datagram> = (0..args.keys.div_ceil(per).max(1))
        .map(|i| {
            let flows: Vec<Flow> = (i * per..(i + 1) * per).map(Flow::v4).collect();
            Datagram {
                bytes: Builder::new(version, 0)
                    .data(TEMPLATE_ID, fields, &flows)
                    .build(),
                flow_bytes: flows.iter().map(|f| f.bytes).sum(),
            }
        })
        .collect();
    let sockets = args
        .exporters
        .iter()
        .map(|ip| {
            UdpSocket::bind(SocketAddr::new(*ip, 0))
                .with_context(|| format!("cannot bind an exporter socket to {ip}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut streams: Vec<Stream> = (0..sockets.len())
        .flat_map(|socket| {
            (1..=args.domains).map(move |domain| Stream {
                socket,
                domain,
                sequence: 0,
            })
        })
        .collect();
    let mut templates: Vec<Vec<u8>> = streams
        .iter()
        .map(|s| {
            Builder::new(version, s.domain)
                .template(TEMPLATE_ID, fields)
                .build()
        })
        .collect();

    let datagrams_per_sec = args.rate as f64 / f64::from(per);
    let total = (datagrams_per_sec * args.duration).round() as u64;
    let (mut sent, mut flow_bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut send = |socket: &UdpSocket, bytes: &[u8]| {
        for to in &args.to {
            // A closed port answers with ICMP and the next send fails: counted, not fatal.
            if socket.send_to(bytes, to).is_err() {
                errors += 1;
            }
        }
    };
    let start = Instant::now();
    let mut next_templates = start;
    while sent < total {
        let now = Instant::now();
        if now >= next_templates {
            next_templates = now + TEMPLATE_EVERY;
            let unix = unix_secs();
            for (stream, template) in streams.iter_mut().zip(&mut templates) {
                // Templates carry the sequence of the data that follows (they count no records).
                stamp(template, args.version, stream, unix, 0);
                send(&sockets[stream.socket], template);
            }
        }
        let due = ((now - start).as_secs_f64() * datagrams_per_sec) as u64;
        if sent >= due {
            thread::sleep(IDLE);
            continue;
        }
        let unix = unix_secs();
        while sent < due.min(total) {
            let n = streams.len();
            let stream = &mut streams[(sent % n as u64) as usize];
            let pool_len = pool.len() as u64;
            let datagram = &mut pool[(sent % pool_len) as usize];
            stamp(&mut datagram.bytes, args.version, stream, unix, per);
            send(&sockets[stream.socket], &datagram.bytes);
            flow_bytes += datagram.flow_bytes;
            sent += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "datagrams={sent} records={} bytes={flow_bytes} seconds={seconds:.3} rate={:.0} destinations={} send_errors={errors}",
        sent * u64::from(per),
        (sent * u64::from(per)) as f64 / seconds,
        args.to.len()
    );
    Ok(())
}

fn unix_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// Writes the stream's export time, sequence number and domain into a datagram's header
/// and moves the sequence on: by the data records for IPFIX, by one datagram for v9.
fn stamp(datagram: &mut [u8], version: Version, stream: &mut Stream, unix: u32, records: u32) {
    let (time_at, sequence_at, domain_at, step) = match version {
        Version::Ipfix => (4, 8, 12, records),
        Version::V9 => (8, 12, 16, 1),
    };
    datagram[time_at..time_at + 4].copy_from_slice(&unix.to_be_bytes());
    datagram[sequence_at..sequence_at + 4].copy_from_slice(&stream.sequence.to_be_bytes());
    datagram[domain_at..domain_at + 4].copy_from_slice(&stream.domain.to_be_bytes());
    stream.sequence = stream.sequence.wrapping_add(step);
}
