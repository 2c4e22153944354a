import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeService, makeSlice } from '../model/fixtures.ts';
import { StateStore } from './store.ts';

test('the same snapshot is handed out until something changes', () => {
  const store = new StateStore();
  const web = makeService({ name: 'web' });
  const slice = makeSlice('web', ['10.244.7.2']);
  store.upsertService(web);
  store.upsertSlice(slice);
  const a = store.snapshot();
  assert.equal(store.snapshot(), a);
  store.deleteService('default', 'absent'); // no change, no new copy
  assert.equal(store.snapshot(), a);

  store.upsertService(makeService({ name: 'api' }));
  const b = store.snapshot();
  assert.notEqual(b, a);
  // Earlier snapshots never change; unchanged objects keep their identity.
  assert.deepEqual([...a.services.keys()], ['default/web']);
  assert.deepEqual([...b.services.keys()].sort(), ['default/api', 'default/web']);
  assert.equal(b.services.get('default/web'), web);
  assert.equal(b.slicesByService.get('default/web')?.[0], slice);

  store.deleteSlice('default', slice.name);
  const c = store.snapshot();
  assert.equal(c.slicesByService.get('default/web'), undefined);
  assert.equal(b.slicesByService.get('default/web')?.[0], slice);
});
