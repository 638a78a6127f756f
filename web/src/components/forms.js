// The API's message next to the field it names ("name: field required"), or above the form when
// it names none. Cleared on each save; the form's values are never touched, so nothing is lost.
import { reactive, ref } from 'vue'
import { ApiError } from '../api'

export function useFormErrors() {
  const fields = reactive({})
  const general = ref('')

  function clear() {
    for (const name of Object.keys(fields)) delete fields[name]
    general.value = ''
  }

  /** Show an error from a failed save; `known` lists the form's field names. */
  function show(error, known = []) {
    clear()
    if (error instanceof ApiError && error.field) {
      const field = error.field.split('.')[0]
      if (known.includes(field)) {
        fields[field] = error.detail
        return
      }
    }
    general.value = error?.message || String(error)
  }

  return { fields, general, clear, show }
}
