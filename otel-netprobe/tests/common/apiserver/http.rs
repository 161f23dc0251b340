//! The HTTP side: accepting connections, routing, lists and watch streams.

use super::{
    Arc, BOOKMARK_EVERY, Body, BodyExt, Bytes, Duration, Frame, Infallible, MAX_WATCH, Method, Msg,
    MutexGuard, Query, Request, Response, Selector, Shared, StatusCode, Store, StreamBody, TokioIo,
    Watcher, bookmark_line, event_line, full, full_bytes, http1, io, json, line, lock, mpsc,
    not_found, oneshot, parse_path, respond, status, status_json, watch,
};

/// Accepts connections until `stop`; the connections are closed when this returns.
pub(super) async fn serve(
    listener: &tokio::net::TcpListener,
    store: &Shared,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: oneshot::Receiver<()>,
) {
    // Every connection ends when this is dropped.
    let (kill, _) = watch::channel(());
    loop {
        let stream = tokio::select! {
            biased;
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let mut killed = kill.subscribe();
        let store = Arc::clone(store);
        let service = hyper::service::service_fn(move |req| {
            let response = route(&store, &req);
            async move { Ok::<_, Infallible>(response) }
        });
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = http1::Builder::new();
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        biased;
                        _ = killed.changed() => {}
                        _ = conn => {}
                    }
                }
                Some(tls) => {
                    // A failed handshake (a client that does not trust us) just closes.
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        biased;
                        _ = killed.changed() => {}
                        _ = conn => {}
                    }
                }
            }
        });
    }
}

pub(super) fn route<B>(shared: &Shared, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    {
        let mut store = lock(shared);
        if let Some(token) = &store.token {
            let sent = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if sent != Some(format!("Bearer {token}").as_str()) {
                store.unauthorized += 1;
                return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
            }
        }
    }
    if req.method() != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET is served",
        );
    }
    let query = Query::parse(req.uri().query().unwrap_or_default());
    let selector = match Selector::parse(&query) {
        Ok(selector) => selector,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let Some((key, namespace, name)) = parse_path(path) else {
        return not_found(path);
    };
    let mut store = lock(shared);
    let Some(resource) = store.resources.get(&key) else {
        return not_found(path);
    };
    if namespace.is_some() && !resource.namespaced {
        return not_found(path);
    }
    if let Some(name) = name {
        let object = resource.objects.get(&(namespace.unwrap_or_default(), name));
        return object.map_or_else(|| not_found(path), |o| respond(StatusCode::OK, full(o)));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = Watcher {
        key,
        namespace,
        selector,
        tx,
    };
    if query.flag("watch") {
        start_watch(shared, store, watcher, rx, &query)
    } else {
        store.list(&watcher, &query)
    }
}

/// Answers a watch request: the events it missed (or all objects), then a live stream.
pub(super) fn start_watch(
    shared: &Shared,
    mut store: MutexGuard<'_, Store>,
    watcher: Watcher,
    rx: mpsc::UnboundedReceiver<Msg>,
    query: &Query,
) -> Response<Body> {
    *store.watches.entry(watcher.key.1.clone()).or_default() += 1;
    let (api_version, kind) = (
        watcher.key.0.clone(),
        store.resources[&watcher.key].kind.clone(),
    );
    let from: Option<u64> = query.positive("resourceVersion");
    let mut replay: Vec<Msg> = match from {
        Some(from) if from < store.compacted => {
            let expired = status_json(StatusCode::GONE, "Expired", "too old resource version");
            let error = line(&json!({ "type": "ERROR", "object": expired }));
            return respond(StatusCode::OK, full_bytes(error));
        }
        Some(from) => {
            let missed = store
                .history
                .iter()
                .filter(|c| c.rv > from && watcher.wants(&c.key, &c.object));
            missed.map(|c| Msg::Line(c.line.clone())).collect()
        }
        None => store
            .matching(&watcher)
            .map(|o| Msg::Line(event_line("ADDED", o)))
            .collect(),
    };
    if query.flag("sendInitialEvents") {
        replay.push(Msg::Line(bookmark_line(
            &api_version,
            &kind,
            store.rv,
            true,
        )));
    }
    store.watchers.push(watcher);
    drop(store);
    let timeout = query.positive("timeoutSeconds");
    let timeout = timeout.map_or(MAX_WATCH, |t| Duration::from_secs(t).min(MAX_WATCH));
    let bookmarks = query
        .flag("allowWatchBookmarks")
        .then_some((api_version, kind));
    let (out, mut body) = mpsc::channel(16);
    tokio::spawn(pump(
        Arc::clone(shared),
        replay,
        rx,
        out,
        bookmarks,
        timeout,
    ));
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| body.poll_recv(cx)));
    respond(StatusCode::OK, body.boxed_unsync())
}

/// Writes one watch's events into its response body until the timeout, a cut, or the client
/// going away.
pub(super) async fn pump(
    store: Shared,
    mut batch: Vec<Msg>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    out: mpsc::Sender<Result<Frame<Bytes>, io::Error>>,
    bookmarks: Option<(String, String)>,
    timeout: Duration,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    loop {
        for msg in batch.drain(..) {
            // A body error makes hyper close the connection without the last chunk.
            let (frame, cut) = match msg {
                Msg::Line(line) => (Ok(Frame::data(line)), false),
                Msg::Cut => (Err(io::Error::other("watch cut by the test")), true),
            };
            if out.send(frame).await.is_err() || cut {
                return;
            }
        }
        tokio::select! {
            () = &mut deadline => return,
            msg = rx.recv() => batch.push(msg.unwrap_or(Msg::Cut)),
            _ = ticks.tick(), if bookmarks.is_some() => {
                let Some((api_version, kind)) = &bookmarks else { return };
                // Publishing holds the lock: with the queue drained under it, every event up to
                // `rv` goes out first, so a bookmark never overtakes an event.
                let mut store = lock(&store);
                while let Ok(msg) = rx.try_recv() {
                    batch.push(msg);
                }
                store.bookmarks += 1;
                batch.push(Msg::Line(bookmark_line(api_version, kind, store.rv, false)));
            }
        }
    }
}
