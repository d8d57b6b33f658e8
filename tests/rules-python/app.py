"""The example site's rules (`tests/rules-example/`) as a Python rule module, built with
componentize-py against world `site-rules` of `pve2netbox:rules@0.3.0`.

It changes only what the site changes and asks the host's default rules (the `defaults`
import) for everything else, as the Rust example delegates to `guest_default::DefaultRules`:
- tenant from the VM name prefix (`acme-web01` -> `acme`) through the setting `tenants`
  (`{"acme": "acme", "gx": "globex"}`), else the setting `default_tenant` (else no tenant);
- role from a Proxmox tag `role-<slug>` (`role-db` -> role `db`);
- `tenant` and `role` owned, `description` ignored by default;
- interfaces named by the guest and every IP address in the VRF `guests`: the default rules'
  settings `interface_names = "agent"` and `ip_vrf = "guests"`, unless the context sets them.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import defaults, types as t

NAME = "rules-python"
VERSION = "0.1.0"
WIT_VERSION = "0.3.0"
ROLE_TAG_PREFIX = "role-"
# The site's choices for the children, as default-rules settings (name, JSON text).
CHILD_SETTINGS = (("interface_names", '"agent"'), ("ip_vrf", '"guests"'))
SITE_POLICIES = (
    ("tenant", t.Ownership.OWNED),
    ("role", t.Ownership.OWNED),
    ("description", t.Ownership.IGNORE),
)
ROLE_ATTRS = '{"color":"9e9e9e","vm_role":true}'


def setting(ctx, name):
    """The parsed JSON value of a setting, or None when absent (or not JSON)."""
    for key, text in ctx.settings:
        if key == name:
            try:
                return json.loads(text)
            except ValueError:
                return None
    return None


def bad(name, why):
    return t.RuleError(
        "bad-setting", f"setting {name}: {why} ({NAME}, normalize-desired)"
    )


class SiteSettings:
    """The settings this module reads, parsed once per call."""

    def __init__(self, ctx):
        self.tenants = {}
        tenants = setting(ctx, "tenants")
        if tenants is not None:
            if not isinstance(tenants, dict):
                raise Err(bad("tenants", "expected an object of prefix -> tenant slug"))
            for prefix, slug in tenants.items():
                if not isinstance(slug, str):
                    raise Err(bad("tenants", "every tenant slug must be a string"))
                self.tenants.setdefault(prefix.lower(), slug)
        default = setting(ctx, "default_tenant")
        if default is not None and not isinstance(default, str):
            raise Err(bad("default_tenant", "expected a string"))
        self.default_tenant = default

    def tenant(self, name):
        """The table entry of the text before the first `-`, else the default."""
        prefix, dash, _ = name.partition("-")
        if dash and prefix.lower() in self.tenants:
            return self.tenants[prefix.lower()]
        return self.default_tenant


def role_from_tags(vm):
    """The role slug of the first `role-<slug>` tag among the desired tag slugs."""
    if not isinstance(vm.tags, t.TagsField_Set):
        return None
    for tag in vm.tags.value:
        if tag.startswith(ROLE_TAG_PREFIX):
            return tag[len(ROLE_TAG_PREFIX):] or None
    return None


def site_context(ctx):
    """The context with the site's children settings added where it has none."""
    names = {k for k, _ in ctx.settings}
    extra = [(k, v) for k, v in CHILD_SETTINGS if k not in names]
    if not extra:
        return ctx
    return t.Context(ctx.netbox_version, ctx.known, ctx.policies, ctx.settings + extra)


class Reconcile(exports.Reconcile):
    def info(self):
        return t.ModuleInfo(NAME, VERSION, WIT_VERSION)

    def default_policies(self):
        out = defaults.default_policies()
        for field, ownership in SITE_POLICIES:
            for p in out:
                if p.field == field:
                    p.ownership = ownership
                    break
            else:
                out.append(t.FieldPolicy(field, ownership))
        return out

    def normalize_desired(self, ctx, guests):
        try:
            settings = SiteSettings(ctx)
        except Err as e:
            return [Err(e.value) for _ in guests]
        known = {(k.kind, k.key) for k in ctx.known}
        out = defaults.normalize_desired(site_context(ctx), guests)
        for result in out:
            if not isinstance(result, Ok) or not isinstance(result.value, t.Desired_Vm):
                continue
            d = result.value.value
            if isinstance(d.vm.name, t.TextField_Set):
                tenant = settings.tenant(d.vm.name.value)
                if tenant is not None:
                    if ("tenant", tenant) not in known:
                        d.needs.append(t.ObjectSpec("tenant", tenant, tenant, "{}"))
                    d.vm.tenant = t.RefField_Set(tenant)
            role = role_from_tags(d.vm)
            if role is not None:
                if ("role", role) not in known:
                    d.needs.append(t.ObjectSpec("role", role, role, ROLE_ATTRS))
                d.vm.role = t.RefField_Set(role)
        return out

    def normalize_current(self, ctx, records):
        return defaults.normalize_current(site_context(ctx), records)

    def diff(self, ctx, pairs):
        return defaults.diff(site_context(ctx), pairs)

    def reconcile(self, ctx, items):
        """The three steps as three batch calls; a desired skip or error decides before a
        current error, as the default rules' own `reconcile` does."""
        desired = self.normalize_desired(ctx, [i.guest for i in items])
        records = [i.current for i in items if i.current is not None]
        currents = iter(self.normalize_current(ctx, records) if records else [])
        slots, pairs = [], []
        for item, d in zip(items, desired):
            current = next(currents) if item.current is not None else None
            if isinstance(d, Err):
                slots.append(d)
            elif isinstance(d.value, t.Desired_Skip):
                slots.append(Ok(t.Reconciled_Skip(d.value.value)))
            elif isinstance(current, Err):
                slots.append(current)
            else:
                vm = d.value.value
                name = vm.vm.name.value if isinstance(vm.vm.name, t.TextField_Set) else None
                slots.append((len(pairs), name, vm.needs))
                pairs.append(t.DiffInput(vm.vm, current.value if current else None))
        diffs = self.diff(ctx, pairs) if pairs else []
        out = []
        for slot in slots:
            if not isinstance(slot, tuple):
                out.append(slot)
                continue
            index, name, needs = slot
            changed = diffs[index]
            if isinstance(changed, Err):
                out.append(changed)
            else:
                c = changed.value
                out.append(
                    Ok(t.Reconciled_Vm(t.ReconciledVm(name, needs, c.changes, c.children)))
                )
        return out
