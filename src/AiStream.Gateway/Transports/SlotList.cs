namespace AiStream.Gateway.Transports;

/// <summary>An item of a <see cref="SlotList{T}"/>: it knows where it is, so it can be removed without a search.</summary>
internal abstract class Slotted
{
    /// <summary>Position in the list, or -1 when in none.</summary>
    internal int Slot { get; set; } = -1;
}

/// <summary>
/// A list with O(1) removal (the last item moves into the gap; order is not kept), for sets of thousands of
/// connections that come and go. Not thread-safe: callers hold their own lock.
/// </summary>
internal sealed class SlotList<T>
    where T : Slotted
{
    private readonly List<T> _items = [];

    public int Count => _items.Count;

    public T this[int index] => _items[index];

    public void Add(T item)
    {
        item.Slot = _items.Count;
        _items.Add(item);
    }

    /// <summary>Removes the item; does nothing if it is in no list.</summary>
    public void Remove(T item)
    {
        if (item.Slot < 0)
        {
            return;
        }

        var last = _items[^1];
        _items[item.Slot] = last;
        last.Slot = item.Slot;
        _items.RemoveAt(_items.Count - 1);
        item.Slot = -1;
    }

    public List<T>.Enumerator GetEnumerator() => _items.GetEnumerator();
}
