/**
 * Small helpers for the libvirt XML documents that are not domains (checkpoints, backup jobs,
 * domain capabilities): parse strictly, walk direct children, and escape values when building.
 * Domain XML itself goes through core/domain-xml.ts.
 */
import { DOMParser, type Element } from '@xmldom/xmldom';
import { VirtError } from './errors.ts';

export function parseXmlRoot(xml: string, rootName: string, what: string): Element {
  let root: Element | null | undefined;
  try {
    root = new DOMParser({
      onError: (level, message) => {
        if (level !== 'warning') throw new Error(message);
      },
    }).parseFromString(xml, 'text/xml').documentElement;
  } catch (e) {
    throw new VirtError(
      'VIRT_XML_INVALID',
      `${what} XML does not parse: ${(e as Error).message.split('\n')[0]}`,
      {
        cause: e,
      },
    );
  }
  if (!root || root.nodeName !== rootName) {
    throw new VirtError('VIRT_XML_INVALID', `${what} XML has no <${rootName}> root element`);
  }
  return root;
}

export function childElements(parent: Element, name?: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (name === undefined || n.nodeName === name)) out.push(n as Element);
  }
  return out;
}

export function childElement(parent: Element, name: string): Element | undefined {
  return childElements(parent, name)[0];
}

export function childText(parent: Element, name: string): string | undefined {
  const el = childElement(parent, name);
  const t = el?.textContent?.trim();
  return t ? t : undefined;
}

export function attr(el: Element | undefined, name: string): string | undefined {
  const v = el?.getAttribute(name);
  return v === null || v === undefined || v === '' ? undefined : v;
}

export function escapeXml(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}
