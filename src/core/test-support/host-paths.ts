/**
 * Test support only: every path-like value left in a domain XML (attribute values and element
 * texts that start with "/"), so a test can say which host paths a definition still names.
 */
import type { DomainXml } from '../domain-xml.ts';

export function hostPaths(xml: DomainXml): string[] {
  const out: string[] = [];
  for (const el of Array.from(xml.doc.getElementsByTagName('*'))) {
    for (const a of Array.from(el.attributes)) if (a.value.startsWith('/')) out.push(a.value);
    for (let n = el.firstChild; n; n = n.nextSibling) {
      const text = n.nodeType === 3 ? (n.nodeValue ?? '').trim() : '';
      if (text.startsWith('/')) out.push(text);
    }
  }
  return out;
}
