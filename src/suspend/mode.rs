//! What `sesscache_attach_async` records on a context: the program's completion callback,
//! and the program's own ClientHello callback, which the cache's runs first
//! (`suspend::hello`). Also the ClientHello callbacks programs set on contexts before
//! attaching them asynchronously, which the attach picks up.

use super::pending::{DoneCb, Notify};
use crate::ossl::{ssl_ctx_st, ssl_st, ClientHelloCb};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// An attached context's asynchronous mode (`CtxRecord::hello`).
pub struct AsyncMode {
    done: Option<DoneCb>,
    done_arg: usize,
    /// The program's own ClientHello callback and its argument.
    app: Mutex<Option<(ClientHelloCb, usize)>>,
}

impl AsyncMode {
    pub fn new(
        done: Option<DoneCb>,
        done_arg: *mut c_void,
        app: Option<(ClientHelloCb, usize)>,
    ) -> Self {
        AsyncMode {
            done,
            done_arg: done_arg as usize,
            app: Mutex::new(app),
        }
    }

    /// Whether this mode was made with the same completion callback.
    pub fn same(&self, done: Option<DoneCb>, done_arg: *mut c_void) -> bool {
        self.done.map(|f| f as usize) == done.map(|f| f as usize)
            && self.done_arg == done_arg as usize
    }

    /// The program set its own ClientHello callback on the context.
    pub fn set_app(&self, cb: Option<ClientHelloCb>, arg: *mut c_void) {
        *crate::threads::lock(&self.app) = cb.map(|cb| (cb, arg as usize));
    }

    pub fn app(&self) -> Option<(ClientHelloCb, usize)> {
        *crate::threads::lock(&self.app)
    }

    pub fn notify(&self, ssl: *mut ssl_st) -> Option<Notify> {
        self.done.map(|cb| Notify {
            cb,
            ssl,
            arg: self.done_arg as *mut c_void,
        })
    }
}

/// ClientHello callbacks programs set on contexts that are not (yet) asynchronous, by
/// context address: what `sesscache_attach_async` chains to.
static SEEN: Mutex<Option<HashMap<usize, (usize, usize)>>> = Mutex::new(None);

/// Remembers the program's ClientHello callback for `ctx` (our `SSL_CTX_set_client_hello_cb`).
pub fn remember(ctx: *mut ssl_ctx_st, cb: Option<ClientHelloCb>, arg: *mut c_void) {
    let mut seen = crate::threads::lock(&SEEN);
    let map = seen.get_or_insert_with(HashMap::new);
    match cb {
        Some(cb) => map.insert(ctx as usize, (cb as usize, arg as usize)),
        None => map.remove(&(ctx as usize)),
    };
}

/// Forgets what was remembered for an address: a new context was made there.
pub fn forget_address(ctx: *mut ssl_ctx_st) {
    let mut seen = crate::threads::lock(&SEEN);
    if let Some(map) = seen.as_mut() {
        map.remove(&(ctx as usize));
    }
}

/// The program's ClientHello callback remembered for `ctx`, taken.
pub fn take_remembered(ctx: *mut ssl_ctx_st) -> Option<(ClientHelloCb, usize)> {
    let mut seen = crate::threads::lock(&SEEN);
    let (cb, arg) = seen.as_mut()?.remove(&(ctx as usize))?;
    // SAFETY: stored by `remember` from a ClientHelloCb.
    Some((
        unsafe { std::mem::transmute::<usize, ClientHelloCb>(cb) },
        arg,
    ))
}
