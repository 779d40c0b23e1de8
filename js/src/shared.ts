// Reference-counted connections for the React hooks: one SSEClient per (server, session,
// options), however many components watch it. Framework-free, so it is tested on its own.
//
// Lifecycle: acquire() takes a reference (creating the connection on first use, in an effect,
// never during render); release() drops it, and the connection closes in a microtask if no
// one took it back meanwhile. That is what makes StrictMode's mount -> unmount -> mount, and
// any remount within the same task, reuse the one EventSource instead of opening a second.

import {
  ConnectionState,
  SSEClient,
  type ConnectionStateName,
  type SSEClientOptions,
  type SSEHandler,
  type Unsubscribe,
} from "./client.js";

/** Something handlers can be registered on. */
export interface Subscribable {
  on<T = unknown>(type: string, handler: SSEHandler<T>): Unsubscribe;
}

interface Binding {
  type: string;
  handler: SSEHandler<any>;
  off: Unsubscribe;
}

const noop: Unsubscribe = () => {};

/**
 * Registrations that outlive their target: each is kept here and registered on whatever target
 * is bound now, so rebinding (a new client, a new connection) moves every handler exactly once.
 */
export class Bindings {
  #bindings = new Set<Binding>();
  #target: Subscribable | null = null;

  /** Register `handler` for `type`; returns its own idempotent unsubscribe. */
  add(type: string, handler: SSEHandler<any>): Unsubscribe {
    const binding: Binding = { type, handler, off: this.#target?.on(type, handler) ?? noop };
    this.#bindings.add(binding);
    return () => {
      if (this.#bindings.delete(binding)) binding.off();
    };
  }

  /** Move every registration to `target` (null: to nothing). */
  bind(target: Subscribable | null): void {
    this.#target = target;
    for (const binding of this.#bindings) {
      binding.off();
      binding.off = target?.on(binding.type, binding.handler) ?? noop;
    }
  }

  get size(): number {
    return this.#bindings.size;
  }
}

/**
 * One session's connection, shared: an SSEClient that can be restarted (after `failed`) with
 * the same cursor, its handlers and state watchers moved to the new client.
 */
export class SharedConnection implements Subscribable {
  #client: SSEClient | null = null;
  #bindings = new Bindings();
  #watchers = new Set<() => void>();
  #options: SSEClientOptions;
  #closed = false;

  /** Nothing connects before start(). */
  constructor(options: SSEClientOptions) {
    this.#options = options;
  }

  /** The client in use now (replaced by restart()); null before start(). */
  get client(): SSEClient | null {
    return this.#client;
  }
  get state(): ConnectionStateName {
    return this.#client?.state ?? ConnectionState.CLOSED;
  }

  on<T = unknown>(type: string, handler: SSEHandler<T>): Unsubscribe {
    return this.#bindings.add(type, handler);
  }

  /** Call `watcher()` on every state change; returns unsubscribe. */
  watch(watcher: () => void): Unsubscribe {
    this.#watchers.add(watcher);
    return () => void this.#watchers.delete(watcher);
  }

  /** Connect, unless already connected or closed. */
  start(): void {
    if (!this.#client && !this.#closed) this.restart();
  }

  /** Give up the current client (if any) and connect again from its cursor. */
  restart(): void {
    if (this.#closed) return;
    const cursor = this.#client ? this.#client.lastEventId : (this.#options.lastEventId ?? null);
    this.#client?.destroy();
    const client = new SSEClient({ ...this.#options, lastEventId: cursor });
    client.onConnectionChange(() => this.#notify());
    this.#client = client;
    this.#bindings.bind(client);
    this.#notify();
  }

  /** Close for good. */
  close(): void {
    this.#closed = true;
    this.#bindings.bind(null);
    this.#watchers.clear();
    this.#client?.destroy();
  }

  #notify(): void {
    for (const watcher of [...this.#watchers]) watcher();
  }
}

/** A lease on a shared connection; release() is idempotent. */
export interface Lease {
  readonly connection: SharedConnection;
  release(): void;
}

interface Entry {
  connection: SharedConnection;
  refs: number;
}

/** Shared connections by key, each closed when its last lease is released. */
export class ConnectionPool {
  #entries = new Map<string, Entry>();

  /** Take a reference on `key`'s connection, opening it with `options()` if there is none. */
  acquire(key: string, options: () => SSEClientOptions): Lease {
    let entry = this.#entries.get(key);
    if (!entry) {
      const created: Entry = { connection: new SharedConnection(options()), refs: 0 };
      this.#entries.set(key, created);
      // Connect after the current task: a lease released within it opens nothing.
      queueMicrotask(() => {
        if (created.refs > 0 && this.#entries.get(key) === created) created.connection.start();
      });
      entry = created;
    }
    entry.refs += 1;
    const held = entry;
    let released = false;
    return {
      connection: held.connection,
      release: () => {
        if (released) return;
        released = true;
        held.refs -= 1;
        if (held.refs === 0) queueMicrotask(() => this.#closeIfUnused(key, held));
      },
    };
  }

  /** Connections open now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The reference count of `key` (0 when it has no connection). */
  refs(key: string): number {
    return this.#entries.get(key)?.refs ?? 0;
  }

  #closeIfUnused(key: string, entry: Entry): void {
    if (entry.refs > 0 || this.#entries.get(key) !== entry) return;
    this.#entries.delete(key);
    entry.connection.close();
  }
}

export { ConnectionState };
