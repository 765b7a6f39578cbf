// Our sync documents validate against the real Stash v0.30.1 schema and the fake's SDL, and the
// fake's SDL is a faithful subset of the real schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { graphql, realSchema, fakeSchema, queryFiles, readQuery } from './helpers.mjs';

const { parse, validate, isObjectType, isInputObjectType, isEnumType, isInterfaceType, isScalarType, isUnionType } = graphql;
const real = realSchema();
const fake = fakeSchema();

test('there are sync documents, one operation each, named after the file', () => {
  const files = queryFiles();
  for (const need of ['SyncScenes', 'SyncSceneIds', 'SyncSceneActivity', 'SyncTags', 'SyncPerformers', 'SyncStudios', 'SyncGroups',
    'SyncGalleries', 'SyncTagIds', 'SyncPerformerIds', 'SyncStudioIds', 'SyncGroupIds', 'SyncGalleryIds', 'Version']) {
    assert.ok(files.includes(`${need}.graphql`), `missing ${need}.graphql`);
  }
  for (const f of files) {
    const doc = parse(readQuery(f));
    const ops = doc.definitions.filter((d) => d.kind === 'OperationDefinition');
    assert.equal(ops.length, 1, `${f}: exactly one operation`);
    assert.equal(ops[0].name?.value, f.replace(/\.graphql$/, ''), `${f}: operationName matches file name`);
    assert.equal(ops[0].operation, 'query');
  }
});

for (const f of queryFiles()) {
  test(`${f} validates against the real Stash schema`, () => {
    const errs = validate(real, parse(readQuery(f)));
    assert.deepEqual(errs.map((e) => e.message), []);
  });
  test(`${f} validates against the fake's SDL`, () => {
    const errs = validate(fake, parse(readQuery(f)));
    assert.deepEqual(errs.map((e) => e.message), []);
  });
}

test('every type / field / argument / enum value of the fake SDL exists in the real schema with an identical type', () => {
  const problems = [];
  for (const [name, ft] of Object.entries(fake.getTypeMap())) {
    if (name.startsWith('__')) continue;
    const rt = real.getType(name);
    if (!rt) { problems.push(`type ${name} missing`); continue; }
    if (ft.constructor !== rt.constructor) { problems.push(`type ${name}: kind differs`); continue; }
    if (isScalarType(ft) || isUnionType(ft)) continue;
    if (isEnumType(ft)) {
      const rv = new Set(rt.getValues().map((v) => v.name));
      for (const v of ft.getValues()) if (!rv.has(v.name)) problems.push(`enum ${name}.${v.name} missing`);
      continue;
    }
    if (isObjectType(ft) || isInterfaceType(ft) || isInputObjectType(ft)) {
      const rf = rt.getFields();
      for (const [fname, field] of Object.entries(ft.getFields())) {
        const r = rf[fname];
        if (!r) { problems.push(`${name}.${fname} missing`); continue; }
        if (String(field.type) !== String(r.type)) problems.push(`${name}.${fname}: ${field.type} vs real ${r.type}`);
        if (field.args) {
          for (const a of field.args) {
            const ra = r.args.find((x) => x.name === a.name);
            if (!ra) problems.push(`${name}.${fname}(${a.name}) missing`);
            else if (String(a.type) !== String(ra.type)) problems.push(`${name}.${fname}(${a.name}): ${a.type} vs real ${ra.type}`);
          }
          for (const ra of r.args) {
            if (String(ra.type).endsWith('!') && ra.defaultValue === undefined && !field.args.find((x) => x.name === ra.name)) {
              problems.push(`${name}.${fname}: required argument ${ra.name} not declared`);
            }
          }
        }
      }
      for (const i of ft.getInterfaces?.() || []) {
        if (!rt.getInterfaces().find((x) => x.name === i.name)) problems.push(`${name} implements ${i.name}: not in real schema`);
      }
    }
  }
  for (const root of ['getQueryType', 'getMutationType', 'getSubscriptionType']) {
    const f = fake[root](), r = real[root]();
    if (f && (!r || f.name !== r.name)) problems.push(`${root} root name differs`);
  }
  assert.deepEqual(problems, []);
});

test('the conformance check itself catches a wrong type', () => {
  // Sanity: a deliberately wrong field type must differ in the comparison used above.
  const bad = graphql.buildSchema('type Query { version: Version! } type Version { version: String! hash: String! build_time: String! }');
  assert.notEqual(String(bad.getType('Version').getFields().version.type), String(real.getType('Version').getFields().version.type));
});
