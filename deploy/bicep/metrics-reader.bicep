// Optional, at subscription scope: lets Remediator's identity read metrics through the batch
// metrics API (POST /subscriptions/{id}/metrics:getBatch), which policies with a `region`
// use to read up to 50 targets in one call. That call is authorised on the subscription, so
// the resource-group role of identity-and-role.bicep does not cover it.
//
// The role holds one action, Microsoft.Insights/metrics/read (already in
// `remediator permissions`), rather than the built-in Monitoring Reader, which reads every
// resource of the subscription. Without this assignment, leave `region` out of the policies:
// each target's metrics are then read on its own through ARM, inside the resource group.
//
//   az deployment sub create --location <region> --template-file metrics-reader.bicep \
//     --parameters principalId=<the identity's principalId output>

targetScope = 'subscription'

@description('Principal id of Remediator\'s managed identity (output principalId of identity-and-role.bicep).')
param principalId string

@description('Name of the custom role (unique in the tenant).')
param roleName string = 'Remediator metrics reader ${uniqueString(subscription().id)}'

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'remediator-metrics-reader')
  properties: {
    roleName: roleName
    description: 'Remediator: read Azure Monitor metrics, including the batch metrics API. Nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Insights/metrics/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, role.id)
  properties: {
    roleDefinitionId: role.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Remediator reads metrics in batches across this subscription.'
  }
}
