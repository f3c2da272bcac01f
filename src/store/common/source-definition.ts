/**
 * The check of a delta's source definition before anything is staged: it must parse, and be a
 * domain Haven can make safe to boot (issue 13.1: core/definition-rules.ts).
 *
 * The XML parser and the rules are imported when first needed rather than at start-up: a
 * receiver is started for every replication and answers its first QUERY sooner without them.
 */

/** Loads what the check needs (a store may start this early: Store.expectDelta). */
export function loadDefinitionChecks() {
  return Promise.all([import('../../core/domain-xml.ts'), import('../../core/definition-rules.ts')]);
}

export async function checkSourceDefinition(server: string, xml: string): Promise<void> {
  const [{ DomainXml }, { refuseUnsafe }] = await loadDefinitionChecks();
  refuseUnsafe(
    DomainXml.parse(xml),
    server,
    'Haven replicates QEMU/KVM virtual machines only; check the domain with `virsh dumpxml` on the primary.',
  );
}
