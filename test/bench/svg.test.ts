import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ChartPanel, renderLatencyChart, xmlEscape } from '../../scripts/speedup/svg.ts';

interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

/**
 * A strict little XML reader (enough for well-formedness): one root, tags nest and close in order,
 * attributes quoted and not repeated, `&` only as an entity, no `<` in text or attribute values.
 * Throws on anything else.
 */
function parseXml(src: string): XmlNode {
  let i = 0;
  const fail = (msg: string): never => {
    throw new Error(`${msg} at ${i}: ${JSON.stringify(src.slice(i, i + 40))}`);
  };
  const checkText = (t: string) => {
    if (t.includes('<')) fail('raw < in text');
    for (const m of t.matchAll(/&/g)) if (!/^&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/.test(t.slice(m.index))) fail('bare &');
  };
  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) fail('unterminated declaration');
    i = end + 2;
  }
  const stack: XmlNode[] = [];
  let root: XmlNode | undefined;
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const text = lt < 0 ? src.slice(i) : src.slice(i, lt);
    checkText(text);
    if (stack.length) stack[stack.length - 1]!.text += text;
    else if (text.trim() !== '') fail('text outside the root');
    if (lt < 0) break;
    i = lt;
    if (src.startsWith('</', i)) {
      const m = /^<\/([A-Za-z_][\w.:-]*)\s*>/.exec(src.slice(i));
      if (!m) fail('bad end tag');
      const open = stack.pop();
      if (!open || open.name !== m![1]) fail(`</${m![1]}> closes <${open?.name}>`);
      i += m![0].length;
      continue;
    }
    const m = /^<([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*"[^"]*")*)\s*(\/?)>/.exec(src.slice(i));
    if (!m) fail('bad start tag');
    const node: XmlNode = { name: m![1]!, attrs: {}, children: [], text: '' };
    for (const a of m![2]!.matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*"([^"]*)"/g)) {
      if (a[1]! in node.attrs) fail(`duplicate attribute ${a[1]}`);
      checkText(a[2]!);
      node.attrs[a[1]!] = a[2]!;
    }
    if (stack.length) stack[stack.length - 1]!.children.push(node);
    else if (root) fail('second root element');
    else root = node;
    if (m![3] !== '/') stack.push(node);
    i += m![0].length;
  }
  if (stack.length) fail(`unclosed <${stack[stack.length - 1]!.name}>`);
  if (!root) fail('no root');
  return root!;
}

const all = (n: XmlNode, pred: (x: XmlNode) => boolean): XmlNode[] => [...(pred(n) ? [n] : []), ...n.children.flatMap((c) => all(c, pred))];

function panel(title: string, strategies: string[]): ChartPanel {
  return {
    title,
    series: strategies.map((strategy, k) => ({
      strategy,
      points: [
        { x: 0, y: 1, label: 'dense' },
        { x: 0.2, y: 0.9 - 0.05 * k, yServer: 0.88 - 0.05 * k, label: `${strategy}-20` },
        { x: 0.4, y: 0.75 - 0.05 * k, yServer: null, label: `${strategy}-40` },
        { x: 0.6, y: Number.NaN, label: 'failed' },
      ],
    })),
    target: { x: 0.4, y: 0.61, label: 'target ≤ 0.61' },
    references: [{ label: 'bound from param counts', f: (r) => 1 - 0.75 * r, dash: '2 3' }],
  };
}

describe('renderLatencyChart', () => {
  const strategies = ['mop', 'depth', 'width'];
  const svg = renderLatencyChart([panel('100m, concurrency 1', strategies), panel('100m, concurrency 8', strategies), panel('bundled <tiny> & "quoted"', strategies)], {
    title: 'ratio vs compression & <things>',
    columns: 2,
  });
  const doc = parseXml(svg);

  it('is well-formed XML with an <svg> root in the SVG namespace', () => {
    assert.equal(doc.name, 'svg');
    assert.equal(doc.attrs.xmlns, 'http://www.w3.org/2000/svg');
    assert.match(doc.attrs.viewBox!, /^0 0 \d+ \d+$/);
    assert.ok(svg.includes('bundled &lt;tiny&gt; &amp; &quot;quoted&quot;'), 'titles are escaped');
  });

  it('draws one series per strategy in every panel, with a marker per finite point', () => {
    const panels = all(doc, (n) => n.name === 'g' && n.attrs.class === 'panel');
    assert.equal(panels.length, 3);
    for (const p of panels) {
      const series = all(p, (n) => n.name === 'g' && n.attrs.class === 'series');
      assert.deepEqual(series.map((s) => s.attrs['data-strategy']).sort(), [...strategies].sort());
      for (const s of series) {
        const line = s.children.find((c) => c.name === 'polyline')!;
        assert.equal(line.attrs.points!.split(' ').length, 3, 'the NaN point is left out');
        const filled = s.children.filter((c) => c.name === 'circle' && c.attrs.fill !== 'none');
        const hollow = s.children.filter((c) => c.name === 'circle' && c.attrs.fill === 'none');
        assert.equal(filled.length, 3);
        assert.equal(hollow.length, 1, 'one server-side marker (the other is null)');
        for (const c of s.children.filter((c) => c.name === 'circle')) {
          assert.ok(Number.isFinite(Number(c.attrs.cx)) && Number.isFinite(Number(c.attrs.cy)));
        }
      }
      assert.equal(all(p, (n) => n.attrs.class === 'target').length, 1);
      assert.equal(all(p, (n) => n.attrs.class === 'reference').length, 2, 'ideal + one given');
    }
  });

  it('lays panels out in a grid without overlap', () => {
    assert.equal(doc.attrs.width, '720');
    const h = Number(doc.attrs.height);
    assert.ok(h > 2 * 250, `two rows of panels: height ${h}`);
  });

  it('copes with no panels and escapes every XML special character', () => {
    parseXml(renderLatencyChart([], { title: 'empty' }));
    assert.equal(xmlEscape(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
  });

  it('the checker itself rejects malformed XML', () => {
    assert.throws(() => parseXml('<svg><g></svg>'));
    assert.throws(() => parseXml('<svg a="1" a="2"/>'));
    assert.throws(() => parseXml('<svg>a & b</svg>'));
    assert.throws(() => parseXml('<svg/><svg/>'));
  });
});
