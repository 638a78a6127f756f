// A paged list from an `/api` route that answers {items, total, page, page_size}: the filters,
// the page, loading and the last error, reloaded on demand.
import { reactive, ref } from 'vue'
import { api } from '../api'

export function usePagedList(path, initialFilters = {}, { pageSize = 20 } = {}) {
  const filters = reactive({ ...initialFilters })
  const items = ref([])
  const total = ref(0)
  const page = ref(1)
  const size = ref(pageSize)
  const loading = ref(false)
  const error = ref('')

  async function load() {
    loading.value = true
    error.value = ''
    try {
      const resolved = typeof path === 'function' ? path() : path
      const data = await api.get(resolved, { ...filters, page: page.value, page_size: size.value })
      items.value = data.items || []
      total.value = data.total || 0
    } catch (e) {
      error.value = e.message
    } finally {
      loading.value = false
    }
  }

  function search() {
    page.value = 1
    return load()
  }

  function reset() {
    for (const name of Object.keys(filters)) filters[name] = initialFilters[name]
    return search()
  }

  return { filters, items, total, page, size, loading, error, load, search, reset }
}
