// Command kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the
// library Flux's health checks use) of each Kubernetes object read from stdin: a JSON object, a JSON
// list with items, or a stream of JSON or YAML documents. One line per object:
//
//	<kind>/<namespace>/<name> <Status> <message>
//
// Exit status 1 when the input cannot be read or a verdict cannot be computed.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func objects(r io.Reader) ([]map[string]interface{}, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(r), 4096)
	var out []map[string]interface{}
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty YAML document
		}
		// apimachinery's JSON keeps integers as int64, which kstatus's field accessors expect.
		var obj map[string]interface{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		if items, ok := obj["items"].([]interface{}); ok && strings.HasSuffix(fmt.Sprint(obj["kind"]), "List") {
			for _, item := range items {
				m, ok := item.(map[string]interface{})
				if !ok {
					return nil, fmt.Errorf("a list item is not an object: %v", item)
				}
				out = append(out, m)
			}
			continue
		}
		out = append(out, obj)
	}
}

func main() {
	objs, err := objects(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: reading stdin: %v\n", err)
		os.Exit(1)
	}
	failed := false
	for _, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		id := fmt.Sprintf("%s/%s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
		res, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s: %v\n", id, err)
			failed = true
			continue
		}
		fmt.Printf("%s %s %s\n", id, res.Status, strings.Join(strings.Fields(res.Message), " "))
	}
	if failed {
		os.Exit(1)
	}
}
