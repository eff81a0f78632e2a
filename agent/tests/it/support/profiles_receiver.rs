//! An OTLP profiles receiver on loopback: `ProfilesService/Export` served
//! with the generated server and messages of the `opentelemetry-proto` crate
//! (OTLP v1.10.0's `.proto` files, compiled by prost and tonic), not with
//! any of Tally's code. It keeps every request, and reads them back the way
//! a backend does: through the shared dictionary, by index.
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    thread,
};

use opentelemetry_proto::tonic::{
    collector::profiles::v1development::{
        ExportProfilesServiceRequest, ExportProfilesServiceResponse,
        profiles_service_server::{ProfilesService, ProfilesServiceServer},
    },
    common::v1::{AnyValue, any_value},
    profiles::v1development::ProfilesDictionary,
};

type Received = Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportProfilesServiceRequest)>>>;

struct Service {
    received: Received,
}

#[tonic::async_trait]
impl ProfilesService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, tonic::Status> {
        let metadata = request.metadata().clone();
        self.received
            .lock()
            .unwrap()
            .push((metadata, request.into_inner()));
        Ok(tonic::Response::new(
            ExportProfilesServiceResponse::default(),
        ))
    }
}

pub struct ProfilesReceiver {
    pub addr: SocketAddr,
    received: Received,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ProfilesReceiver {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Received = Arc::default();
        let service = Service {
            received: received.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                tonic::transport::Server::builder()
                    .add_service(
                        ProfilesServiceServer::new(service)
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                            .max_decoding_message_size(64 << 20),
                    )
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self {
            addr,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, with its gRPC metadata.
    pub fn requests(&self) -> Vec<(tonic::metadata::MetadataMap, ExportProfilesServiceRequest)> {
        self.received.lock().unwrap().clone()
    }

    /// What the profiles of the process `pid` add up to, over every request.
    pub fn process(&self, pid: u32) -> ProcessTotals {
        self.process_within(pid, std::time::UNIX_EPOCH, std::time::SystemTime::now())
    }

    /// The same, of the profiles whose whole span lies between `from` and
    /// `to`: the seconds another profiler sampled.
    pub fn process_within(
        &self,
        pid: u32,
        from: std::time::SystemTime,
        to: std::time::SystemTime,
    ) -> ProcessTotals {
        let nanos = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        };
        let (from, to) = (nanos(from), nanos(to));
        let mut t = ProcessTotals::default();
        for (_, r) in self.requests() {
            let d = r.dictionary.as_ref().expect("a dictionary");
            for rp in &r.resource_profiles {
                let resource = rp.resource.as_ref().expect("a resource");
                let attrs: BTreeMap<String, String> = resource
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect();
                if attrs.get("process.pid") != Some(&pid.to_string()) {
                    continue;
                }
                t.resource = attrs;
                for sp in &rp.scope_profiles {
                    for p in &sp.profiles {
                        if p.time_unix_nano < from || p.time_unix_nano + p.duration_nano > to {
                            continue;
                        }
                        t.profiles += 1;
                        let st = p.sample_type.expect("a sample type");
                        t.sample_type = (
                            d.string_table[st.type_strindex as usize].clone(),
                            d.string_table[st.unit_strindex as usize].clone(),
                        );
                        t.period = p.period;
                        for s in &p.samples {
                            t.add(d, s);
                        }
                    }
                }
            }
        }
        t
    }
}

impl Drop for ProfilesReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One process's samples as a backend reads them.
#[derive(Debug, Default)]
pub struct ProcessTotals {
    pub resource: BTreeMap<String, String>,
    pub profiles: usize,
    pub sample_type: (String, String),
    pub period: i64,
    pub samples: u64,
    /// Samples whose leaf is the function.
    pub flat: HashMap<String, u64>,
    /// Samples with the function anywhere in the stack.
    pub cum: HashMap<String, u64>,
    /// The attributes of each function's locations, as `key=value`, sorted.
    pub frame_attrs: HashMap<String, Vec<String>>,
    /// Samples with the attribute `tally.sample.gc`, and their leaves.
    pub gc_samples: u64,
    pub gc_sample_leaves: HashMap<String, u64>,
}

impl ProcessTotals {
    fn add(
        &mut self,
        d: &ProfilesDictionary,
        s: &opentelemetry_proto::tonic::profiles::v1development::Sample,
    ) {
        // Aggregated values, or one event a timestamp.
        let n: u64 = if s.values.is_empty() {
            s.timestamps_unix_nano.len() as u64
        } else {
            s.values.iter().map(|v| *v as u64).sum()
        };
        self.samples += n;
        let stack = &d.stack_table[s.stack_index as usize];
        let mut names: Vec<String> = Vec::new();
        for &l in &stack.location_indices {
            let loc = &d.location_table[l as usize];
            let mut attrs: Vec<String> = loc
                .attribute_indices
                .iter()
                .map(|&a| {
                    let kv = &d.attribute_table[a as usize];
                    format!(
                        "{}={}",
                        d.string_table[kv.key_strindex as usize],
                        text(kv.value.as_ref())
                    )
                })
                .collect();
            attrs.sort();
            // Inlined functions first, the caller last.
            for line in &loc.lines {
                let f = &d.function_table[line.function_index as usize];
                let name = d.string_table[f.name_strindex as usize].clone();
                // Every attribute any of its locations had: a frame typed
                // one way in one window and another in the next shows.
                let seen = self.frame_attrs.entry(name.clone()).or_default();
                for a in &attrs {
                    if !seen.contains(a) {
                        seen.push(a.clone());
                        seen.sort();
                    }
                }
                names.push(name);
            }
        }
        // The first location is the leaf.
        if let Some(leaf) = names.first() {
            *self.flat.entry(leaf.clone()).or_default() += n;
        }
        names.sort();
        names.dedup();
        for name in &names {
            *self.cum.entry(name.clone()).or_default() += n;
        }
        let gc = s.attribute_indices.iter().any(|&a| {
            let kv = &d.attribute_table[a as usize];
            d.string_table[kv.key_strindex as usize] == "tally.sample.gc"
        });
        if gc {
            self.gc_samples += n;
            if let Some(l) = stack.location_indices.first() {
                let loc = &d.location_table[*l as usize];
                let f = &d.function_table[loc.lines[0].function_index as usize];
                *self
                    .gc_sample_leaves
                    .entry(d.string_table[f.name_strindex as usize].clone())
                    .or_default() += n;
            }
        }
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}
