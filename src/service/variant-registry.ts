/**
 * The served model variants (dense, and later MoP-pruned ones added by the admin API) and which
 * one is active. A request resolves its variant once, at arrival, and keeps it to the end, so
 * switching the active variant never disturbs requests in flight.
 */

/** What a request's `model` field may say besides a variant id: "use the active one". */
export const DEFAULT_MODEL_ALIAS = 'default';

/** Whether a request's `model` field asks for the active variant: omitted, null, '' or "default". */
export function isDefaultModel(model: unknown): model is undefined | null | '' | typeof DEFAULT_MODEL_ALIAS {
  return model === undefined || model === null || model === '' || model === DEFAULT_MODEL_ALIAS;
}

/** An A/B test: this share of requests that do not name a model go to `variant` instead of the active one. */
export interface TrafficSplit {
  variant: string;
  share: number;
}

/** Generic over what a variant is: the service keeps engine-backed variants, HTTP sees ServedVariant. */
export class VariantRegistry<V extends { readonly id: string }> {
  private readonly variants = new Map<string, V>();
  private activeId: string | undefined;
  private trafficSplit: TrafficSplit | undefined;
  /** Injectable for tests; Math.random otherwise. */
  random: () => number = Math.random;

  /** Adds a variant; the first one added becomes active. */
  add(variant: V): void {
    if (this.variants.has(variant.id)) throw new Error(`model variant '${variant.id}' is already registered`);
    this.variants.set(variant.id, variant);
    this.activeId ??= variant.id;
  }

  /** Make `id` the variant that requests without a specific model (or "default") get. */
  setActive(id: string): void {
    if (!this.variants.has(id)) throw new Error(`no model variant '${id}'`);
    this.activeId = id;
  }

  get active(): V | undefined {
    return this.activeId === undefined ? undefined : this.variants.get(this.activeId);
  }

  /**
   * The variant a request's `model` field names; omitted or "default" = the active one, or, under
   * an A/B split, the split variant for its share of requests.
   */
  resolve(model: string | null | undefined): V | undefined {
    if (isDefaultModel(model)) {
      const split = this.trafficSplit;
      if (split && this.random() < split.share) return this.variants.get(split.variant) ?? this.active;
      return this.active;
    }
    return this.variants.get(model);
  }

  /**
   * The variant `model` names, or the active one for the default alias, without drawing the A/B
   * split: for describing a model or accounting a request, never for routing one.
   */
  lookup(model: unknown): V | undefined {
    if (isDefaultModel(model)) return this.active;
    return typeof model === 'string' ? this.variants.get(model) : undefined;
  }

  /** Start (or replace) an A/B split; undefined ends it. */
  setSplit(split: TrafficSplit | undefined): void {
    if (split) {
      if (!this.variants.has(split.variant)) throw new Error(`no model variant '${split.variant}'`);
      if (!(split.share >= 0 && split.share <= 1)) throw new RangeError(`share must be in [0, 1], got ${split.share}`);
    }
    this.trafficSplit = split && { ...split };
  }

  get split(): TrafficSplit | undefined {
    return this.trafficSplit && { ...this.trafficSplit };
  }

  has(id: string): boolean {
    return this.variants.has(id);
  }

  get(id: string): V | undefined {
    return this.variants.get(id);
  }

  /** Forget a variant (the caller drains and releases it). The active one cannot be removed. */
  remove(id: string): V {
    const v = this.variants.get(id);
    if (!v) throw new Error(`no model variant '${id}'`);
    if (id === this.activeId) throw new Error(`model variant '${id}' is active; activate another one first`);
    if (this.trafficSplit?.variant === id) this.trafficSplit = undefined;
    this.variants.delete(id);
    return v;
  }

  list(): V[] {
    return [...this.variants.values()];
  }
}
