// A minimal typed event emitter: the SDK has no runtime dependencies.

export type Listener<T> = (event: T) => void;

export class Emitter<Events extends Record<string, unknown>> {
  private listeners: { [K in keyof Events]?: Set<Listener<Events[K]>> } = {};

  on<K extends keyof Events>(name: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners[name];
    if (!set) {
      set = new Set();
      this.listeners[name] = set;
    }
    set.add(fn);
    return () => this.off(name, fn);
  }

  off<K extends keyof Events>(name: K, fn: Listener<Events[K]>): void {
    this.listeners[name]?.delete(fn);
  }

  emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const set = this.listeners[name];
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(event);
      } catch (err) {
        // A throwing listener must not break the client's state machine.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}
