// The example site's rules (`tests/rules-example/`) as a JavaScript rule module, built with
// componentize-js (through jco) against world `site-rules` of `pve2netbox:rules@0.3.0`.
//
// It changes only what the site changes and asks the host's default rules (the `defaults`
// import) for everything else, as the Rust example delegates to `guest_default::DefaultRules`:
// - tenant from the VM name prefix (`acme-web01` -> `acme`) through the setting `tenants`
//   (`{"acme": "acme", "gx": "globex"}`), else the setting `default_tenant` (else no tenant);
// - role from a Proxmox tag `role-<slug>` (`role-db` -> role `db`);
// - `tenant` and `role` owned, `description` ignored by default;
// - interfaces named by the guest and every IP address in the VRF `guests`: the default rules'
//   settings `interface_names = "agent"` and `ip_vrf = "guests"`, unless the context sets them.
//
// Bindings (jco's): records are objects with camelCase fields, variants `{tag, val}`, enums
// strings, options `undefined`, u64 `BigInt`.

import * as defaults from 'pve2netbox:rules/defaults@0.3.0';

const NAME = 'rules-js';
const VERSION = '0.1.0';
const WIT_VERSION = '0.3.0';
const ROLE_TAG_PREFIX = 'role-';
// The site's choices for the children, as default-rules settings (name, JSON text).
const CHILD_SETTINGS = [['interface_names', '"agent"'], ['ip_vrf', '"guests"']];
const SITE_POLICIES = [['tenant', 'owned'], ['role', 'owned'], ['description', 'ignore']];
const ROLE_ATTRS = '{"color":"9e9e9e","vm_role":true}';

/** The parsed JSON value of a setting, or undefined when absent (or not JSON). */
function setting(ctx, name) {
  const found = ctx.settings.find(([key]) => key === name);
  if (!found) return undefined;
  try {
    return JSON.parse(found[1]);
  } catch {
    return undefined;
  }
}

class BadSetting extends Error {
  constructor(name, why) {
    super(`setting ${name}: ${why} (${NAME}, normalize-desired)`);
    this.ruleError = { code: 'bad-setting', message: this.message };
  }
}

/** The settings this module reads, parsed once per call. */
function siteSettings(ctx) {
  const tenants = new Map();
  const table = setting(ctx, 'tenants');
  if (table !== undefined && table !== null) {
    if (typeof table !== 'object' || Array.isArray(table)) {
      throw new BadSetting('tenants', 'expected an object of prefix -> tenant slug');
    }
    for (const [prefix, slug] of Object.entries(table)) {
      if (typeof slug !== 'string') {
        throw new BadSetting('tenants', 'every tenant slug must be a string');
      }
      const key = prefix.toLowerCase();
      if (!tenants.has(key)) tenants.set(key, slug);
    }
  }
  const defaultTenant = setting(ctx, 'default_tenant');
  if (defaultTenant !== undefined && defaultTenant !== null && typeof defaultTenant !== 'string') {
    throw new BadSetting('default_tenant', 'expected a string');
  }
  return {
    // The table entry of the text before the first `-`, else the default.
    tenant(name) {
      const dash = name.indexOf('-');
      const prefix = dash >= 0 ? name.slice(0, dash).toLowerCase() : undefined;
      if (prefix !== undefined && tenants.has(prefix)) return tenants.get(prefix);
      return defaultTenant ?? undefined;
    },
  };
}

/** The role slug of the first `role-<slug>` tag among the desired tag slugs. */
function roleFromTags(vm) {
  if (vm.tags.tag !== 'set') return undefined;
  const tag = vm.tags.val.find((t) => t.startsWith(ROLE_TAG_PREFIX));
  return tag ? tag.slice(ROLE_TAG_PREFIX.length) || undefined : undefined;
}

/** The context with the site's children settings added where it has none. */
function siteContext(ctx) {
  const names = new Set(ctx.settings.map(([k]) => k));
  const extra = CHILD_SETTINGS.filter(([k]) => !names.has(k));
  return extra.length ? { ...ctx, settings: [...ctx.settings, ...extra] } : ctx;
}

function info() {
  return { name: NAME, version: VERSION, witVersion: WIT_VERSION };
}

function defaultPolicies() {
  const out = defaults.defaultPolicies();
  for (const [field, ownership] of SITE_POLICIES) {
    const p = out.find((x) => x.field === field);
    if (p) p.ownership = ownership;
    else out.push({ field, ownership });
  }
  return out;
}

function normalizeDesired(ctx, guests) {
  let settings;
  try {
    settings = siteSettings(ctx);
  } catch (e) {
    if (!(e instanceof BadSetting)) throw e;
    return guests.map(() => ({ tag: 'err', val: e.ruleError }));
  }
  const known = new Set(ctx.known.map((k) => `${k.kind}\u0000${k.key}`));
  const out = defaults.normalizeDesired(siteContext(ctx), guests);
  for (const result of out) {
    if (result.tag !== 'ok' || result.val.tag !== 'vm') continue;
    const d = result.val.val;
    if (d.vm.name.tag === 'set') {
      const tenant = settings.tenant(d.vm.name.val);
      if (tenant !== undefined) {
        if (!known.has(`tenant\u0000${tenant}`)) {
          d.needs.push({ kind: 'tenant', key: tenant, name: tenant, attrs: '{}' });
        }
        d.vm.tenant = { tag: 'set', val: tenant };
      }
    }
    const role = roleFromTags(d.vm);
    if (role !== undefined) {
      if (!known.has(`role\u0000${role}`)) {
        d.needs.push({ kind: 'role', key: role, name: role, attrs: ROLE_ATTRS });
      }
      d.vm.role = { tag: 'set', val: role };
    }
  }
  return out;
}

function normalizeCurrent(ctx, records) {
  return defaults.normalizeCurrent(siteContext(ctx), records);
}

function diff(ctx, pairs) {
  return defaults.diff(siteContext(ctx), pairs);
}

// The three steps as three batch calls; a desired skip or error decides before a current
// error, as the default rules' own `reconcile` does.
function reconcile(ctx, items) {
  const desired = normalizeDesired(ctx, items.map((i) => i.guest));
  const records = items.filter((i) => i.current !== undefined).map((i) => i.current);
  const currents = records.length ? normalizeCurrent(ctx, records) : [];
  let record = 0;
  const slots = [];
  const pairs = [];
  items.forEach((item, i) => {
    const current = item.current !== undefined ? currents[record++] : undefined;
    const d = desired[i];
    if (d.tag === 'err') {
      slots.push(d);
    } else if (d.val.tag === 'skip') {
      slots.push({ tag: 'ok', val: { tag: 'skip', val: d.val.val } });
    } else if (current !== undefined && current.tag === 'err') {
      slots.push(current);
    } else {
      const vm = d.val.val;
      const name = vm.vm.name.tag === 'set' ? vm.vm.name.val : undefined;
      slots.push({ index: pairs.length, name, needs: vm.needs });
      pairs.push({ desired: vm.vm, current: current?.val });
    }
  });
  const diffs = pairs.length ? diff(ctx, pairs) : [];
  return slots.map((slot) => {
    if (slot.index === undefined) return slot;
    const changed = diffs[slot.index];
    if (changed.tag === 'err') return changed;
    const { changes, children } = changed.val;
    return {
      tag: 'ok',
      val: { tag: 'vm', val: { name: slot.name, needs: slot.needs, changes, children } },
    };
  });
}

export const reconcile_ = { info, defaultPolicies, normalizeDesired, normalizeCurrent, diff, reconcile };
export { reconcile_ as reconcile };
