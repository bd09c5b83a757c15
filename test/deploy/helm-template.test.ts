/**
 * The subset renderer against what helm itself printed. Every expected string below is the
 * output of helm v4.1.4 (`helm template`) for the same template and values, so these tests pin
 * the renderer to helm's behaviour where it is least obvious: Go's float formatting of values,
 * Sprig's argument order and emptiness rules, trim markers, YAML 1.1 values.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { formatGoFloat, loadChart, renderChart, TemplateError } from './helm-template.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Render one template (plus optional helpers) of a throwaway chart. */
function render(template: string, values = '', helpers = ''): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'helm-subset-'));
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'templates'));
  fs.writeFileSync(path.join(dir, 'Chart.yaml'), 'apiVersion: v2\nname: probe\nversion: 1.2.3+build\nappVersion: "4.5"\n');
  fs.writeFileSync(path.join(dir, 'values.yaml'), values);
  fs.writeFileSync(path.join(dir, 'templates/out.yaml'), template);
  if (helpers) fs.writeFileSync(path.join(dir, 'templates/_helpers.tpl'), helpers);
  return renderChart(loadChart(dir), { releaseName: 'r', namespace: 'ns' }).manifests.get('probe/templates/out.yaml') ?? '';
}

const numbers = 'nums: {a: 4194304, b: 1000000, c: 123456, d: 0.4, e: 0.00001, g: 1.5e-7, h: 100000, i: 999999, j: 1234567.5, k: -2500000, l: 0.0001, m: 12, n: 0}\n';

describe('helm subset renderer', () => {
  it('prints numbers from values as Go float64s, and int/int64/mul/add as integers', () => {
    const out = render('{{- range $k, $v := .Values.nums }}\n{{ $k }}: [{{ $v }}] [{{ $v | quote }}] [{{ $v | int64 }}] [{{ $v | int }}] [{{ mul $v 1000 }}] [{{ add $v 1 }}]\n{{- end }}', numbers);
    assert.equal(
      out,
      [
        '',
        'a: [4.194304e+06] ["4.194304e+06"] [4194304] [4194304] [4194304000] [4194305]',
        'b: [1e+06] ["1e+06"] [1000000] [1000000] [1000000000] [1000001]',
        'c: [123456] ["123456"] [123456] [123456] [123456000] [123457]',
        'd: [0.4] ["0.4"] [0] [0] [0] [1]',
        'e: [1e-05] ["1e-05"] [0] [0] [0] [1]',
        // `n` is YAML 1.1's false: helm reads values files that way.
        'false: [0] ["0"] [0] [0] [0] [1]',
        'g: [1.5e-07] ["1.5e-07"] [0] [0] [0] [1]',
        'h: [100000] ["100000"] [100000] [100000] [100000000] [100001]',
        'i: [999999] ["999999"] [999999] [999999] [999999000] [1000000]',
        'j: [1.2345675e+06] ["1.2345675e+06"] [1234567] [1234567] [1234567000] [1234568]',
        'k: [-2.5e+06] ["-2.5e+06"] [-2500000] [-2500000] [-2500000000] [-2499999]',
        'l: [0.0001] ["0.0001"] [0] [0] [0] [1]',
        'm: [12] ["12"] [12] [12] [12000] [13]',
      ].join('\n'),
    );
    assert.equal(formatGoFloat(1e21), '1e+21');
    assert.equal(formatGoFloat(-0.5), '-0.5');
  });

  it('implements the Sprig string functions with their argument order', () => {
    const lines = [
      'nindent:{{ "a\\n\\nb" | nindent 2 }}',
      'indent:{{ "a\\nb" | indent 3 }}',
      'quote: {{ quote "x" 1 true }} {{ .Values.q | quote }} {{ .Values.uni | quote }}',
      'trunc: {{ trunc 3 "abcdef" }} {{ trunc -2 "abcdef" }} {{ trunc 10 "abc" }}',
      'trimSuffix: {{ trimSuffix "-" "ab-" }} {{ trimSuffix "-" "ab" }}',
      'printf: {{ printf "%s-%s" "a" "b" }} {{ printf "%d" (int64 5) }} {{ printf "%v %v" 1.5 true }} {{ printf "%q" "x" }}',
      'print: {{ print "a" "b" }} {{ print 1 2 }} {{ print "a" 1 2 "b" }}',
      'contains: {{ contains "ab" "xaby" }} {{ contains "z" "xy" }}',
      'replace: {{ replace "+" "_" "1+2+3" }}',
      'sha: {{ sha256sum "hello" }}',
    ];
    const out = render(lines.join('\n'), 'q: "say \\"hi\\"\\tnow"\nuni: "÷ ü"\n');
    assert.equal(
      out,
      [
        'nindent:\n  a\n  \n  b',
        'indent:   a\n   b',
        'quote: "x" "1" "true" "say \\"hi\\"\\tnow" "÷ ü"',
        'trunc: abc ef abc',
        'trimSuffix: ab ab',
        'printf: a-b 5 1.5 true "x"',
        'print: ab 1 2 a1 2b',
        'contains: true false',
        'replace: 1_2_3',
        'sha: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
      ].join('\n'),
    );
  });

  it('follows Go template truth, and/or/not, default and comparisons', () => {
    const out = render(
      [
        'default: [{{ default "d" "" }}] [{{ default "d" .Values.missing }}] [{{ default "d" 0 }}] [{{ default "d" "x" }}] [{{ default 5 .Values.nums.n }}]',
        'andor: [{{ and 1 "" 3 }}] [{{ and 1 2 3 }}] [{{ or "" 0 "z" }}] [{{ or "" 0 }}] [{{ not "" }}] [{{ not .Values.list }}]',
        'cmp: {{ gt (int64 3) 1 }} {{ eq "a" "a" }} {{ ne "a" "b" }} {{ lt 1 2 }} {{ eq .Values.nums.m 12.0 }}',
        'missing: [{{ .Values.missing }}] [{{ .Values.nil }}]',
      ].join('\n'),
      numbers + 'list: [1]\nnil: null\n',
    );
    assert.equal(out, ['default: [d] [d] [d] [x] [5]', 'andor: [] [3] [z] [0] [true] [false]', 'cmp: true true true true true', 'missing: [] []'].join('\n'));
  });

  it('provides .Chart, .Release and .Template, and scopes variables like Go', () => {
    const out = render(
      'chart: {{ .Chart.Name }} {{ .Chart.Version }} {{ .Chart.AppVersion }} {{ .Release.Name }} {{ .Release.Namespace }} {{ .Release.Service }} {{ .Template.Name }} {{ .Template.BasePath }}\n{{- $x := "one" }}\n{{- if true }}{{ $x = "two" }}{{ end }}\nvar: {{ $x }}',
    );
    assert.equal(out, 'chart: probe 1.2.3+build 4.5 r ns Helm probe/templates/out.yaml probe/templates\nvar: two');
  });

  it('renders toYaml to the same data as helm (quoting style aside), keys sorted, lists unindented', () => {
    const values = 'strs: {on: "on", one: "1", empty: "", colon: "a: b", multi: "line1\\nline2\\n", hash: "#x", star: "*a", dash: "- x", brace: "{a}", tilde: "~", nul: "null", t: true, nil: null, list: [1, "two", {x: 3}], emptyMap: {}, emptyList: []}\n';
    const out = render('{{ toYaml .Values.strs }}', values);
    // helm v4.1.4's output for the same values:
    const helm = `brace: '{a}'\ncolon: 'a: b'\ndash: '- x'\nempty: ""\nemptyList: []\nemptyMap: {}\nhash: '#x'\nlist:\n- 1\n- two\n- x: 3\nmulti: |\n  line1\n  line2\nnil: null\nnul: "null"\none: "1"\nstar: '*a'\nt: true\ntilde: "~"\n"true": "on"`;
    assert.deepEqual(YAML.parse(out, { version: '1.1' }), YAML.parse(helm, { version: '1.1' }));
    assert.deepEqual(
      out.split('\n').filter((l) => /^[^\s-]/.test(l)).map((l) => l.split(':')[0]!.replaceAll('"', '')),
      ['brace', 'colon', 'dash', 'empty', 'emptyList', 'emptyMap', 'hash', 'list', 'multi', 'nil', 'nul', 'one', 'star', 't', 'tilde', 'true'],
    );
    assert.match(out, /^list:\n- 1\n- two\n- x: 3$/m);
  });

  it('trims whitespace at {{- and -}}, and include passes its data as . and $', () => {
    const helpers = '{{- define "t" -}}\n[{{ .a }}|{{ $.a }}]\n{{- end }}';
    assert.equal(render('x:\n  {{- include "t" .Values | nindent 2 }}\n  y {{- "z" -}}   \n w', 'a: 1\n', helpers), 'x:\n  [1|1]\n  yzw');
  });

  it('ranges over maps in key order and over lists, and keeps raw strings raw', () => {
    assert.equal(render('{{- range $k, $v := .Values.m }}{{ $k }}={{ $v }};{{ end }} {{ range .Values.l }}<{{ . }}>{{ end }} {{`{{ $labels.x }}`}}', 'm: {b: 2, a: 1}\nl: [p, q]\n'), 'a=1;b=2; <p><q> {{ $labels.x }}');
  });

  it('treats an include that printed nothing as false in if / or, as the chart\'s on-switches use it', () => {
    // The shape of mop-serve.adminEnabled / apiKeyEnabled / adminServicePort; helm v4.1.4 printed these lines.
    const helpers = [
      '{{- define "a" -}}{{- if .Values.a }}true{{ end }}{{- end }}',
      '{{- define "b" -}}{{- if .Values.b }}true{{ end }}{{- end }}',
      '{{- define "port" -}}\n{{- if .Values.port }}\n{{- .Values.port | int64 }}\n{{- else }}\n{{- .Values.other | int64 }}\n{{- end }}\n{{- end }}',
    ].join('\n');
    const template = 'x: "{{ if or (include "a" .) (include "b" .) }}either{{ else }}neither{{ end }} {{ if include "a" . }}a{{ else }}not-a{{ end }} {{ include "port" . }} {{ with .Values.port }}{{ . | int64 }}{{ end }}|"';
    assert.equal(render(template, 'a: ""\nb: yes-b\nport: ""\nother: 9000\n', helpers), 'x: "either not-a 9000 |"');
    assert.equal(render(template, 'a: ""\nb: ""\nport: 9100\nother: 9000\n', helpers), 'x: "neither not-a 9100 9100|"');
  });

  it('refuses what the subset does not implement instead of rendering it differently', () => {
    assert.throws(() => render('{{ lower "A" }}'), (e: Error) => e instanceof TemplateError && /function "lower" is outside the subset/.test(e.message));
    assert.throws(() => render('{{ .Capabilities.KubeVersion }}'), TemplateError);
    assert.throws(() => render('{{ .Chart.Home }}'), /\.Chart\.Home is outside the subset/);
    assert.throws(() => render('{{ template "x" . }}'), /outside the subset/);
    assert.throws(() => render('{{ .Values.m }}', 'm: {a: 1}\n'), /toYaml/);
    assert.throws(() => render('{{ if true }}x'), /without \{\{ end \}\}/);
    assert.throws(() => render('{{ printf "%s" 1 }}'), /%s of a non-string/);
  });
});
